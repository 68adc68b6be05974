package groups

import (
	"bytes"
	"context"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// State is a group's state, named as Kafka names it in DescribeGroups and
// ListGroups.
type State int

// The states of a classic group.
const (
	Empty State = iota
	PreparingRebalance
	CompletingRebalance
	Stable
	Dead
)

func (s State) String() string {
	return [...]string{"Empty", "PreparingRebalance", "CompletingRebalance", "Stable", "Dead"}[s]
}

// Protocol is one assignment protocol a member supports, with its
// metadata (for "consumer" groups, the subscription).
type Protocol struct {
	Name     string
	Metadata []byte
}

// member is one member of a group.
type member struct {
	id, instanceID       string // instanceID "" for a dynamic member
	clientID, clientHost string
	sessionTimeout       time.Duration
	rebalanceTimeout     time.Duration
	protocols            []Protocol
	assignment           []byte
	joinedSeq            int64 // order of joining, for choosing a leader

	join chan JoinResult // set while the member waits in JoinGroup
	sync chan SyncResult // set while the member waits in SyncGroup

	deadline time.Time // of its session
	timer    *time.Timer
}

// metadataFor returns the member's metadata for a protocol.
func (m *member) metadataFor(name string) []byte {
	for _, p := range m.protocols {
		if p.Name == name {
			return p.Metadata
		}
	}
	return nil
}

func sameProtocols(a, b []Protocol) bool {
	return slices.EqualFunc(a, b, func(x, y Protocol) bool { return x.Name == y.Name && bytes.Equal(x.Metadata, y.Metadata) })
}

// group is one group. Its fields are guarded by mu; timers take mu too.
type group struct {
	sh        *shard
	key, name string

	mu           sync.Mutex
	state        State
	protocolType string
	protocol     string
	generation   int32
	leader       string
	members      map[string]*member
	statics      map[string]string      // instance id → member id
	pending      map[string]*time.Timer // member ids given with MEMBER_ID_REQUIRED
	joinSeq      int64
	offsets      map[TopicPartition]Offset
	// emptySince is when the group last became Empty (zero for a group
	// that never had members); its offsets expire a retention after the
	// later of that and their last commit.
	emptySince time.Time

	// The rebalance in progress: its sequence number (a timer of an
	// older one does nothing), the earliest time it may complete (the
	// initial delay of an empty group) and its deadline.
	rebalanceSeq      int64
	rebalanceNotAfter time.Time
	rebalanceNotUntil time.Time
	rebalanceTimer    *time.Timer
}

func newGroup(sh *shard, key, name string) *group {
	return &group{sh: sh, key: key, name: name, members: map[string]*member{}, statics: map[string]string{},
		pending: map[string]*time.Timer{}, offsets: map[TopicPartition]Offset{}}
}

// restoreGroup rebuilds a group from its last metadata record: Stable with
// its members and their assignments when it had members (their sessions
// start now, so members gone meanwhile expire and the group rebalances),
// Empty otherwise.
func restoreGroup(sh *shard, key string, v *kmsg.GroupMetadataValue) *group {
	g := newGroup(sh, key, key[len(projectOf(key))+1:])
	g.protocolType, g.generation = v.ProtocolType, v.Generation
	if v.Protocol != nil {
		g.protocol = *v.Protocol
	}
	if v.Leader != nil {
		g.leader = *v.Leader
	}
	for _, vm := range v.Members {
		m := &member{id: vm.MemberID, clientID: vm.ClientID, clientHost: vm.ClientHost,
			sessionTimeout: time.Duration(vm.SessionTimeoutMillis) * time.Millisecond, rebalanceTimeout: time.Duration(vm.RebalanceTimeoutMillis) * time.Millisecond,
			protocols: []Protocol{{Name: g.protocol, Metadata: vm.Subscription}}, assignment: vm.Assignment}
		if vm.InstanceID != nil {
			m.instanceID = *vm.InstanceID
			g.statics[m.instanceID] = m.id
		}
		g.joinSeq++
		m.joinedSeq = g.joinSeq
		g.members[m.id] = m
		g.touch(m)
	}
	if len(g.members) > 0 {
		g.state = Stable
	} else if v.CurrentStateTimestamp > 0 {
		g.emptySince = time.UnixMilli(v.CurrentStateTimestamp)
	}
	return g
}

// isShell reports whether the group never held anything: created by a
// request that then failed (a JoinGroup refused, say). Such a group is
// neither listed nor written.
func (g *group) isShell() bool {
	return g.state == Empty && g.generation == 0 && len(g.members) == 0 && len(g.pending) == 0 && len(g.offsets) == 0
}

// snapshot returns the records of the group's whole state, for a
// checkpoint.
func (g *group) snapshot() []entry {
	out := []entry{groupEntry(g.key, g.metadataValue())}
	for tp, o := range g.offsets {
		out = append(out, offsetEntry(g.key, tp, &o))
	}
	return out
}

// metadataValue is the group's metadata as Kafka writes it.
func (g *group) metadataValue() *kmsg.GroupMetadataValue {
	v := &kmsg.GroupMetadataValue{ProtocolType: g.protocolType, Generation: g.generation, CurrentStateTimestamp: g.sh.c.now().UnixMilli()}
	if g.state == Empty && !g.emptySince.IsZero() {
		v.CurrentStateTimestamp = g.emptySince.UnixMilli()
	}
	if g.protocol != "" {
		v.Protocol = &g.protocol
	}
	if g.leader != "" {
		v.Leader = &g.leader
	}
	for _, m := range g.sortedMembers() {
		vm := kmsg.GroupMetadataValueMember{MemberID: m.id, ClientID: m.clientID, ClientHost: m.clientHost,
			RebalanceTimeoutMillis: int32(m.rebalanceTimeout.Milliseconds()), SessionTimeoutMillis: int32(m.sessionTimeout.Milliseconds()),
			Subscription: m.metadataFor(g.protocol), Assignment: m.assignment}
		if m.instanceID != "" {
			id := m.instanceID
			vm.InstanceID = &id
		}
		v.Members = append(v.Members, vm)
	}
	return v
}

// persist writes the group's metadata. Called with mu held.
func (g *group) persist() error {
	ctx, cancel := context.WithTimeout(g.sh.c.ctx, writeTimeout)
	defer cancel()
	return g.sh.appendEntries(ctx, []entry{groupEntry(g.key, g.metadataValue())})
}

// writeTimeout bounds one write of the shard log.
const writeTimeout = 30 * time.Second

func (g *group) sortedMembers() []*member {
	out := make([]*member, 0, len(g.members))
	for _, m := range g.members {
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b *member) int { return int(a.joinedSeq - b.joinedSeq) })
	return out
}

func (g *group) stopTimers() {
	for _, m := range g.members {
		if m.timer != nil {
			m.timer.Stop()
		}
	}
	for _, t := range g.pending {
		t.Stop()
	}
	if g.rebalanceTimer != nil {
		g.rebalanceTimer.Stop()
	}
}

// touch starts a member's session again: it expires unless the member is
// heard from within its session timeout.
func (g *group) touch(m *member) {
	m.deadline = g.sh.c.now().Add(m.sessionTimeout)
	if m.timer == nil {
		m.timer = time.AfterFunc(m.sessionTimeout, func() { g.expire(m) })
		return
	}
	m.timer.Reset(m.sessionTimeout)
}

// expire removes a member whose session ran out. A member waiting in
// JoinGroup is not expired: it did what it must.
func (g *group) expire(m *member) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.sh.isClosed() || g.members[m.id] != m {
		return
	}
	if left := m.deadline.Sub(g.sh.c.now()); left > 0 || m.join != nil {
		if left <= 0 {
			left = m.sessionTimeout
		}
		m.timer.Reset(left)
		return
	}
	g.sh.c.logger.Info("kafka groups: member's session expired", "group", g.key, "member", m.id)
	g.remove(m, kerr.UnknownMemberID)
	g.membersChanged()
}

// remove takes a member out of the group, answering its waiting join or
// sync with err.
func (g *group) remove(m *member, err *kerr.Error) {
	if m.join != nil {
		m.join <- JoinResult{Err: err, MemberID: m.id}
		m.join = nil
	}
	if m.sync != nil {
		m.sync <- SyncResult{Err: err}
		m.sync = nil
	}
	if m.timer != nil {
		m.timer.Stop()
	}
	delete(g.members, m.id)
	if m.instanceID != "" && g.statics[m.instanceID] == m.id {
		delete(g.statics, m.instanceID)
	}
	if g.leader == m.id {
		g.leader = ""
	}
}

// membersChanged moves the group on after members left.
func (g *group) membersChanged() {
	switch g.state {
	case Stable, CompletingRebalance:
		g.prepareRebalance()
	case PreparingRebalance:
		g.tryCompleteJoin()
	}
}

// prepareRebalance starts a rebalance: every member must join again
// within the rebalance timeout.
func (g *group) prepareRebalance() {
	if g.state == CompletingRebalance {
		// The members waiting for their assignment rejoin.
		for _, m := range g.members {
			if m.sync != nil {
				m.sync <- SyncResult{Err: kerr.RebalanceInProgress}
				m.sync = nil
			}
		}
	}
	now := g.sh.c.now()
	timeout := time.Duration(0)
	for _, m := range g.members {
		timeout = max(timeout, m.rebalanceTimeout)
	}
	g.rebalanceNotUntil = now
	if g.state == Empty {
		g.rebalanceNotUntil = now.Add(min(g.sh.c.cfg.InitialRebalanceDelay, timeout))
	}
	g.state = PreparingRebalance
	g.rebalanceSeq++
	g.rebalanceNotAfter = now.Add(timeout)
	g.scheduleRebalance()
	g.tryCompleteJoin()
}

// scheduleRebalance sets the timer of the rebalance in progress for its
// next moment: the end of the initial delay, then the deadline.
func (g *group) scheduleRebalance() {
	now := g.sh.c.now()
	at := g.rebalanceNotAfter
	if now.Before(g.rebalanceNotUntil) {
		at = g.rebalanceNotUntil
	}
	seq := g.rebalanceSeq
	if g.rebalanceTimer != nil {
		g.rebalanceTimer.Stop()
	}
	g.rebalanceTimer = time.AfterFunc(at.Sub(now), func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.sh.isClosed() || g.state != PreparingRebalance || g.rebalanceSeq != seq {
			return
		}
		if !g.sh.c.now().Before(g.rebalanceNotAfter) {
			g.completeJoin()
			return
		}
		if !g.tryCompleteJoin() {
			g.scheduleRebalance()
		}
	})
}

// tryCompleteJoin completes the rebalance once every member waits in
// JoinGroup and the initial delay is over.
func (g *group) tryCompleteJoin() bool {
	if g.state != PreparingRebalance || g.sh.c.now().Before(g.rebalanceNotUntil) {
		return false
	}
	for _, m := range g.members {
		if m.join == nil {
			return false
		}
	}
	g.completeJoin()
	return true
}

// completeJoin ends the join phase: members that did not rejoin are
// removed, the generation is bumped, a protocol is chosen and every member
// is answered, the leader with the member list.
func (g *group) completeJoin() {
	if g.rebalanceTimer != nil {
		g.rebalanceTimer.Stop()
	}
	for _, m := range g.members {
		if m.join == nil {
			g.sh.c.logger.Info("kafka groups: member did not rejoin within the rebalance timeout", "group", g.key, "member", m.id)
			g.remove(m, kerr.UnknownMemberID)
		}
	}
	g.generation++
	if len(g.members) == 0 {
		g.state, g.protocol, g.leader = Empty, "", ""
		g.emptySince = g.sh.c.now()
		if err := g.persist(); err != nil {
			g.sh.c.logger.Warn("kafka groups: empty group not written", "group", g.key, "err", err)
		}
		return
	}
	g.state = CompletingRebalance
	g.protocol = g.selectProtocol()
	sorted := g.sortedMembers()
	if _, ok := g.members[g.leader]; !ok {
		g.leader = sorted[0].id
	}
	for _, m := range sorted {
		res := g.joinResult(m)
		if m.id == g.leader {
			res.Members = g.memberList()
		}
		m.join <- res
		m.join = nil
		g.touch(m)
	}
}

func (g *group) joinResult(m *member) JoinResult {
	return JoinResult{Generation: g.generation, ProtocolType: g.protocolType, Protocol: g.protocol, Leader: g.leader, MemberID: m.id}
}

func (g *group) memberList() []JoinMember {
	var out []JoinMember
	for _, m := range g.sortedMembers() {
		out = append(out, JoinMember{MemberID: m.id, InstanceID: m.instanceID, Metadata: m.metadataFor(g.protocol)})
	}
	return out
}

// candidates are the protocols every member supports (and extra, when
// given), in the order of the first member's preference.
func (g *group) candidates(extra []Protocol) []string {
	has := func(ps []Protocol, name string) bool {
		return slices.ContainsFunc(ps, func(x Protocol) bool { return x.Name == name })
	}
	base := extra
	if ms := g.sortedMembers(); len(ms) > 0 {
		base = ms[0].protocols
	}
	var out []string
	for _, p := range base {
		ok := extra == nil || has(extra, p.Name)
		for _, m := range g.members {
			ok = ok && has(m.protocols, p.Name)
		}
		if ok {
			out = append(out, p.Name)
		}
	}
	return out
}

// selectProtocol chooses by vote: each member votes for the candidate it
// prefers most; ties go to the first member's preference.
func (g *group) selectProtocol() string {
	cands := g.candidates(nil)
	votes := map[string]int{}
	for _, m := range g.members {
		for _, p := range m.protocols {
			if slices.Contains(cands, p.Name) {
				votes[p.Name]++
				break
			}
		}
	}
	best := ""
	for _, c := range cands {
		if best == "" || votes[c] > votes[best] {
			best = c
		}
	}
	return best
}

// JoinRequest is a JoinGroup.
type JoinRequest struct {
	MemberID, InstanceID string
	ClientID, ClientHost string
	ProtocolType         string
	Protocols            []Protocol
	SessionTimeout       time.Duration
	RebalanceTimeout     time.Duration
	// RequireKnownMemberID answers a member without id MEMBER_ID_REQUIRED
	// with its id, which it joins with (JoinGroup v4+).
	RequireKnownMemberID bool
}

// JoinMember is a member as the leader sees it.
type JoinMember struct {
	MemberID, InstanceID string
	Metadata             []byte
}

// JoinResult is the answer to a JoinGroup.
type JoinResult struct {
	Err            *kerr.Error
	Generation     int32
	ProtocolType   string
	Protocol       string
	Leader         string
	MemberID       string
	Members        []JoinMember
	SkipAssignment bool
}

// Join serves a JoinGroup; it waits until the rebalance completes.
func (c *Coordinator) Join(ctx context.Context, project, name string, req JoinRequest) JoinResult {
	if req.SessionTimeout < c.cfg.MinSessionTimeout || req.SessionTimeout > c.cfg.MaxSessionTimeout {
		return JoinResult{Err: kerr.InvalidSessionTimeout, MemberID: req.MemberID}
	}
	if req.RebalanceTimeout <= 0 {
		req.RebalanceTimeout = req.SessionTimeout // JoinGroup v0 has none
	}
	g, err := c.lookup(ctx, project, name, req.MemberID == "")
	if err != nil {
		return JoinResult{Err: asKerr(err), MemberID: req.MemberID}
	}
	if g == nil {
		return JoinResult{Err: kerr.UnknownMemberID, MemberID: req.MemberID}
	}
	g.mu.Lock()
	ch, res := g.join(req)
	g.mu.Unlock()
	if ch == nil {
		return res
	}
	select {
	case res := <-ch:
		return res
	case <-ctx.Done():
		// The connection closed: the member stays until the rebalance
		// completes without it or its session expires.
		return JoinResult{Err: kerr.RequestTimedOut, MemberID: req.MemberID}
	}
}

// join does what a JoinGroup does under the group's lock: it answers at
// once, or returns the channel the answer will come on.
func (g *group) join(req JoinRequest) (chan JoinResult, JoinResult) {
	fail := func(err *kerr.Error) (chan JoinResult, JoinResult) {
		return nil, JoinResult{Err: err, MemberID: req.MemberID}
	}
	if g.state == Dead {
		return fail(kerr.CoordinatorNotAvailable)
	}
	if req.ProtocolType == "" || len(req.Protocols) == 0 {
		return fail(kerr.InconsistentGroupProtocol)
	}
	if len(g.members) > 0 && (req.ProtocolType != g.protocolType || len(g.candidates(req.Protocols)) == 0) {
		// A lone member changing its protocols is the group's only
		// opinion: it may.
		if len(g.members) != 1 || g.members[req.MemberID] == nil {
			return fail(kerr.InconsistentGroupProtocol)
		}
	}
	if req.MemberID == "" {
		newID := req.ClientID + "-" + uuid.NewString()
		if req.InstanceID != "" {
			if oldID, ok := g.statics[req.InstanceID]; ok {
				return g.rejoinStatic(g.members[oldID], newID, req)
			}
		} else if req.RequireKnownMemberID {
			// The member joins again with this id; until then it is not
			// one, and the id lapses after a session timeout.
			timeout := req.SessionTimeout
			g.pending[newID] = time.AfterFunc(timeout, func() {
				g.mu.Lock()
				delete(g.pending, newID)
				g.mu.Unlock()
			})
			return nil, JoinResult{Err: kerr.MemberIDRequired, MemberID: newID}
		}
		return g.addAndWait(newID, req)
	}
	if t, ok := g.pending[req.MemberID]; ok {
		t.Stop()
		delete(g.pending, req.MemberID)
		return g.addAndWait(req.MemberID, req)
	}
	if req.InstanceID != "" {
		if id, ok := g.statics[req.InstanceID]; ok && id != req.MemberID {
			return fail(kerr.FencedInstanceID)
		}
	}
	m := g.members[req.MemberID]
	if m == nil {
		return fail(kerr.UnknownMemberID)
	}
	ch := make(chan JoinResult, 1)
	switch g.state {
	case PreparingRebalance:
		g.update(m, req)
		m.join = ch
		g.tryCompleteJoin()
		return ch, JoinResult{}
	case CompletingRebalance:
		if sameProtocols(m.protocols, req.Protocols) {
			// It did not get the answer of this generation: again.
			res := g.joinResult(m)
			if m.id == g.leader {
				res.Members = g.memberList()
			}
			return nil, res
		}
	case Stable:
		if m.id != g.leader && sameProtocols(m.protocols, req.Protocols) {
			return nil, g.joinResult(m)
		}
	}
	g.update(m, req)
	m.join = ch
	g.prepareRebalance()
	return ch, JoinResult{}
}

// update takes a rejoining member's new settings.
func (g *group) update(m *member, req JoinRequest) {
	m.protocols = req.Protocols
	m.sessionTimeout, m.rebalanceTimeout = req.SessionTimeout, req.RebalanceTimeout
	m.clientID, m.clientHost = req.ClientID, req.ClientHost
}

// addAndWait adds a member and starts (or joins) a rebalance.
func (g *group) addAndWait(id string, req JoinRequest) (chan JoinResult, JoinResult) {
	if len(g.members) == 0 {
		g.protocolType = req.ProtocolType
	}
	g.joinSeq++
	m := &member{id: id, instanceID: req.InstanceID, joinedSeq: g.joinSeq}
	g.update(m, req)
	g.members[id] = m
	if m.instanceID != "" {
		g.statics[m.instanceID] = id
	}
	ch := make(chan JoinResult, 1)
	m.join = ch
	g.touch(m)
	if g.state == PreparingRebalance {
		g.tryCompleteJoin()
	} else {
		g.prepareRebalance()
	}
	return ch, JoinResult{}
}

// rejoinStatic gives a static member that joins again without its member
// id a new one; the old id is fenced. In a Stable group with unchanged
// protocols nothing is rebalanced: the member keeps its assignment, and a
// leader is told to skip assigning (v9's skip_assignment; older leaders'
// assignments are ignored by SyncGroup in a Stable group).
func (g *group) rejoinStatic(old *member, newID string, req JoinRequest) (chan JoinResult, JoinResult) {
	delete(g.members, old.id)
	if old.join != nil {
		old.join <- JoinResult{Err: kerr.FencedInstanceID, MemberID: old.id}
		old.join = nil
	}
	if old.sync != nil {
		old.sync <- SyncResult{Err: kerr.FencedInstanceID}
		old.sync = nil
	}
	wasLeader := g.leader == old.id
	old.id = newID
	g.members[newID] = old
	g.statics[req.InstanceID] = newID
	if wasLeader {
		g.leader = newID
	}
	g.touch(old)
	if g.state == Stable && sameProtocols(old.protocols, req.Protocols) {
		g.update(old, req)
		if err := g.persist(); err != nil {
			return nil, JoinResult{Err: asKerr(err), MemberID: newID}
		}
		res := g.joinResult(old)
		if wasLeader {
			res.Members, res.SkipAssignment = g.memberList(), true
		}
		return nil, res
	}
	g.update(old, req)
	ch := make(chan JoinResult, 1)
	old.join = ch
	if g.state == PreparingRebalance {
		g.tryCompleteJoin()
	} else {
		g.prepareRebalance()
	}
	return ch, JoinResult{}
}

// SyncResult is the answer to a SyncGroup.
type SyncResult struct {
	Err                    *kerr.Error
	ProtocolType, Protocol string
	Assignment             []byte
}

// SyncRequest is a SyncGroup; Assignments come from the leader.
type SyncRequest struct {
	MemberID, InstanceID   string
	Generation             int32
	ProtocolType, Protocol string // checked when set (v5+)
	Assignments            map[string][]byte
}

// Sync serves a SyncGroup: the leader brings the assignments, every member
// gets its own once the leader's are durable.
func (c *Coordinator) Sync(ctx context.Context, project, name string, req SyncRequest) SyncResult {
	g, err := c.lookup(ctx, project, name, false)
	if err != nil {
		return SyncResult{Err: asKerr(err)}
	}
	if g == nil {
		return SyncResult{Err: kerr.UnknownMemberID}
	}
	g.mu.Lock()
	ch, res := g.sync(req)
	g.mu.Unlock()
	if ch == nil {
		return res
	}
	select {
	case res := <-ch:
		return res
	case <-ctx.Done():
		return SyncResult{Err: kerr.RequestTimedOut}
	}
}

func (g *group) sync(req SyncRequest) (chan SyncResult, SyncResult) {
	fail := func(err *kerr.Error) (chan SyncResult, SyncResult) { return nil, SyncResult{Err: err} }
	if g.state == Dead {
		return fail(kerr.CoordinatorNotAvailable)
	}
	if err := g.checkMember(req.MemberID, req.InstanceID); err != nil {
		return fail(err)
	}
	if req.Generation != g.generation {
		return fail(kerr.IllegalGeneration)
	}
	if (req.ProtocolType != "" && req.ProtocolType != g.protocolType) || (req.Protocol != "" && req.Protocol != g.protocol) {
		return fail(kerr.InconsistentGroupProtocol)
	}
	m := g.members[req.MemberID]
	g.touch(m)
	switch g.state {
	case PreparingRebalance:
		return fail(kerr.RebalanceInProgress)
	case Stable:
		return nil, g.syncResult(m)
	}
	ch := make(chan SyncResult, 1)
	m.sync = ch
	if m.id != g.leader {
		return ch, SyncResult{}
	}
	for _, o := range g.members {
		o.assignment = req.Assignments[o.id]
	}
	if err := g.persist(); err != nil {
		// The assignments are not durable: the members join again.
		e := asKerr(err)
		for _, o := range g.members {
			o.assignment = nil
			if o.sync != nil {
				o.sync <- SyncResult{Err: e}
				o.sync = nil
			}
		}
		g.prepareRebalance()
		return ch, SyncResult{}
	}
	g.state = Stable
	for _, o := range g.members {
		if o.sync != nil {
			o.sync <- g.syncResult(o)
			o.sync = nil
		}
	}
	return ch, SyncResult{}
}

func (g *group) syncResult(m *member) SyncResult {
	return SyncResult{ProtocolType: g.protocolType, Protocol: g.protocol, Assignment: m.assignment}
}

// checkMember checks that a member is one of the group, and that a static
// member's instance is still this member.
func (g *group) checkMember(memberID, instanceID string) *kerr.Error {
	if instanceID != "" {
		if id, ok := g.statics[instanceID]; ok && id != memberID {
			return kerr.FencedInstanceID
		}
	}
	if g.members[memberID] == nil {
		return kerr.UnknownMemberID
	}
	return nil
}

// Heartbeat serves a Heartbeat.
func (c *Coordinator) Heartbeat(ctx context.Context, project, name, memberID, instanceID string, generation int32) error {
	g, err := c.lookup(ctx, project, name, false)
	if err != nil {
		return err
	}
	if g == nil {
		return kerr.UnknownMemberID
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.state == Dead:
		return kerr.CoordinatorNotAvailable
	case g.state == Empty:
		return kerr.UnknownMemberID
	}
	if err := g.checkMember(memberID, instanceID); err != nil {
		return err
	}
	if generation != g.generation {
		return kerr.IllegalGeneration
	}
	g.touch(g.members[memberID])
	if g.state == PreparingRebalance {
		return kerr.RebalanceInProgress
	}
	return nil
}

// Leaving is a member leaving: by member id, by instance id, or both.
type Leaving struct{ MemberID, InstanceID string }

// Leave serves a LeaveGroup; it returns an error per member.
func (c *Coordinator) Leave(ctx context.Context, project, name string, leaving []Leaving) ([]*kerr.Error, error) {
	g, err := c.lookup(ctx, project, name, false)
	if err != nil {
		return nil, err
	}
	out := make([]*kerr.Error, len(leaving))
	if g == nil {
		for i := range out {
			out[i] = kerr.UnknownMemberID
		}
		return out, nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.state == Dead {
		return nil, kerr.CoordinatorNotAvailable
	}
	changed := false
	for i, l := range leaving {
		id := l.MemberID
		if l.InstanceID != "" {
			sid, ok := g.statics[l.InstanceID]
			switch {
			case !ok:
				out[i] = kerr.UnknownMemberID
				continue
			case id != "" && id != sid:
				out[i] = kerr.FencedInstanceID
				continue
			}
			id = sid
		}
		if t, ok := g.pending[id]; ok {
			t.Stop()
			delete(g.pending, id)
			continue
		}
		m := g.members[id]
		if m == nil {
			out[i] = kerr.UnknownMemberID
			continue
		}
		g.remove(m, kerr.UnknownMemberID)
		changed = true
	}
	if changed {
		g.membersChanged()
	}
	return out, nil
}

// asKerr returns the Kafka error of an error of this package.
func asKerr(err error) *kerr.Error {
	if err == nil {
		return nil
	}
	if ke := kerr.ErrorForCode(Code(err)); ke != nil {
		if k, ok := ke.(*kerr.Error); ok {
			return k
		}
	}
	return kerr.UnknownServerError
}
