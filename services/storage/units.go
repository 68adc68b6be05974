package storage

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	metadatav1 "github.com/opendms/dms/gen/go/dms/cluster/metadata/v1"
	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	"github.com/opendms/dms/services/datakeys"
	"github.com/opendms/dms/services/errs"
	"github.com/opendms/dms/services/placement"
	"github.com/opendms/dms/services/storage/logid"
)

// Cluster is what a storage engine needs to replicate: who it is, where
// units are placed, etcd to change a unit's in-sync replicas, whether its
// own etcd lease can still be trusted, and how to reach another node's
// storage. A nil Cluster runs the engine standalone: every log is led here
// and nothing is replicated (the engine's unit tests).
type Cluster struct {
	Node         string
	Placement    *placement.Cache
	Etcd         *clientv3.Client
	SessionValid func() bool
	Dial         func(node string) (storagev1.StorageServiceClient, error)
	// DataKeys holds the projects' data keys (nil, or off: every log is
	// sealed with the master key, as before per-project keys).
	DataKeys *datakeys.Manager
}

// unit is this node's view of one unit of replication it is a replica of.
type unit struct {
	id  placement.Unit
	key string

	mu        sync.Mutex
	st        placement.State // the placement acted on
	leading   bool            // this node leads st.LeaderEpoch
	following bool            // this node follows st.Leader in st.LeaderEpoch
	truncated bool            // as a follower: logs truncated to the leader's for this epoch
	// applyMu orders a follower's writes to the unit's logs: fetched
	// batches are applied under it shared, the comparison with a new
	// leader's logs (truncate) takes it exclusively.
	applyMu sync.RWMutex

	// Leader side.
	followers map[string]*followerProgress // by node
	// epochStart is each log's end when this node became leader: what the
	// previous epochs left, which must be committed before an owner taking
	// over may read the log (see fenceRead).
	epochStart map[string]int64 // by log key
	hwChanged  chan struct{}    // closed when a follower's position moves
	// pendingISR is an in-sync replica set this leader is writing to etcd,
	// and pendingRev the revision it was written at (0 while the write is
	// in flight); see hwMembers.
	pendingISR []string
	pendingRev int64

	// fence orders the internal-log writes of owners: writes hold it
	// shared while they check the owner epoch and until they are durable; a
	// new owner's fencing read takes it exclusively, so it sees every write
	// an older owner got accepted, and none after.
	fence       sync.RWMutex
	fencedEpoch int64
}

type followerProgress struct {
	pos map[string]int64 // next offset the follower asked for, by log key
	// endAtLastFetch is the leader's end of each log when the follower
	// last fetched: a follower that has that much is keeping up, though the
	// leader has written more since (Kafka's rule; asking for the current
	// end would never hold under steady writes).
	endAtLastFetch map[string]int64
	lastFetch      time.Time
	lastCaughtUp   time.Time
}

func (u *unit) signalHW() {
	close(u.hwChanged)
	u.hwChanged = make(chan struct{})
}

// units is the set of units this node replicates, and the logs it has of
// each. Its mutex is taken last: code holding a unit's mutex asks for the
// unit's logs, so nothing may take a unit's mutex while holding this one
// (iterate over a snapshot from all instead).
type units struct {
	mu     sync.Mutex
	byKey  map[string]*unit
	logs   map[string]map[string]logid.ID // unit key → log key → id
	notify chan struct{}                  // closed when any log here publishes
}

func newUnits() *units {
	return &units{byKey: map[string]*unit{}, logs: map[string]map[string]logid.ID{}, notify: make(chan struct{})}
}

func (us *units) get(key string) *unit {
	us.mu.Lock()
	defer us.mu.Unlock()
	return us.byKey[key]
}

// all returns the units, for going over them without holding us.mu.
func (us *units) all() []*unit {
	us.mu.Lock()
	defer us.mu.Unlock()
	out := make([]*unit, 0, len(us.byKey))
	for _, u := range us.byKey {
		out = append(out, u)
	}
	return out
}

func (us *units) addLog(unitKey string, id logid.ID) {
	us.mu.Lock()
	defer us.mu.Unlock()
	m := us.logs[unitKey]
	if m == nil {
		m = map[string]logid.ID{}
		us.logs[unitKey] = m
	}
	m[logid.Key(id)] = id
}

func (us *units) removeLog(unitKey string, id logid.ID) {
	us.mu.Lock()
	defer us.mu.Unlock()
	delete(us.logs[unitKey], logid.Key(id))
}

// logsOf returns the logs this node has of a unit.
func (us *units) logsOf(unitKey string) []logid.ID {
	us.mu.Lock()
	defer us.mu.Unlock()
	out := make([]logid.ID, 0, len(us.logs[unitKey]))
	for _, id := range us.logs[unitKey] {
		out = append(out, id)
	}
	slices.SortFunc(out, func(a, b logid.ID) int {
		if logid.Key(a) < logid.Key(b) {
			return -1
		}
		return 1
	})
	return out
}

// published wakes fetches waiting for new data.
func (us *units) published() {
	us.mu.Lock()
	close(us.notify)
	us.notify = make(chan struct{})
	us.mu.Unlock()
}

func (us *units) publishedChan() <-chan struct{} {
	us.mu.Lock()
	defer us.mu.Unlock()
	return us.notify
}

// unitOf returns the unit a log belongs to.
func (e *Engine) unitOf(id logid.ID) string {
	info := e.cluster.Placement.Info()
	return placement.UnitKey(placement.UnitOfLog(id, info.GetDeliveryShards(), info.GetSchedulerShards()))
}

// indexLogsOnDisk fills the units' log index from the data directory.
func (e *Engine) indexLogsOnDisk() {
	for _, kind := range logid.KindDirs() {
		queues, _ := os.ReadDir(filepath.Join(e.cfg.Dir, kind))
		for _, q := range queues {
			entries, _ := os.ReadDir(filepath.Join(e.cfg.Dir, kind, q.Name()))
			for _, ent := range entries {
				if id, ok := logid.FromDir(kind + "/" + q.Name() + "/" + ent.Name()); ok {
					e.units.addLog(e.unitOf(id), id)
				}
			}
		}
	}
}

// leaderFor returns the unit of a log if this node leads it, or the error
// a caller should get: NOT_LEADER (retry elsewhere) or UNAVAILABLE.
func (e *Engine) leaderFor(id logid.ID, epoch int64) (*unit, error) {
	if e.cluster == nil {
		return nil, nil
	}
	key := e.unitOf(id)
	u := e.units.get(key)
	if u == nil {
		return nil, errs.Wrapf(errs.ErrNotLeader, "storage: node %s does not replicate %s (unit %s)", e.cluster.Node, logid.Describe(id), key)
	}
	u.mu.Lock()
	leading, current := u.leading, u.st.GetLeaderEpoch()
	u.mu.Unlock()
	switch {
	case !leading:
		return nil, errs.Wrapf(errs.ErrNotLeader, "storage: node %s does not lead %s (unit %s, epoch %d)", e.cluster.Node, logid.Describe(id), key, current)
	case epoch != 0 && epoch != current:
		return nil, errs.Wrapf(errs.ErrNotLeader, "storage: %s is led in epoch %d here, not %d", logid.Describe(id), current, epoch)
	case e.stopping.Load():
		return nil, errs.Wrapf(errs.ErrNotLeader, "storage: node %s is stopping; its units move to other replicas", e.cluster.Node)
	case !e.cluster.SessionValid():
		// The lease may have expired at etcd and a new leader been elected:
		// this node must not take writes it might not be the leader for.
		return nil, errs.Wrapf(errs.ErrNotLeader, "storage: node %s cannot vouch for its etcd session; not taking writes", e.cluster.Node)
	}
	return u, nil
}

// hw returns a log's high watermark: the offset below which every in-sync
// replica has the log on disk. A leader without in-sync followers has its
// own end.
func (u *unit) hw(logKey string, end int64) int64 {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.hwLocked(logKey, end)
}

func (u *unit) hwLocked(logKey string, end int64) int64 {
	hw := end
	for _, n := range u.hwMembers() {
		if f := u.followers[n]; n != u.st.GetLeader() && f != nil {
			hw = min(hw, f.pos[logKey])
		} else if n != u.st.GetLeader() {
			return 0 // a follower not heard from in this epoch
		}
	}
	return hw
}

// hwMembers returns the replicas the high watermark waits for: the in-sync
// replicas the placement has, and while a change of them is being written
// (or written but not yet seen here) the proposed ones too — Kafka's
// "maximal ISR". A follower taken in counts from the moment it is
// proposed, so a write is never committed without a replica that the
// controller may already elect. u.mu is held.
func (u *unit) hwMembers() []string {
	if u.pendingISR == nil || (u.pendingRev != 0 && u.st.ModRevision >= u.pendingRev) {
		return u.st.GetIsr()
	}
	out := slices.Clone(u.st.GetIsr())
	for _, n := range u.pendingISR {
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// waitCommitted waits until the high watermark of a log passes offset, the
// unit loses its leadership, or ctx ends.
func (e *Engine) waitCommitted(ctx context.Context, u *unit, l *openLog, offset int64) error {
	key := logid.Key(l.id)
	for {
		u.mu.Lock()
		hw, leading, epoch, changed := u.hwLocked(key, l.NextOffset()), u.leading, u.st.GetLeaderEpoch(), u.hwChanged
		// The in-sync replicas may have shrunk since the write was taken:
		// the high watermark of a lone leader is its own end, which is not
		// the min-insync copies the write was promised (Kafka answers
		// NOT_ENOUGH_REPLICAS_AFTER_APPEND; this waits for them instead).
		enough := int32(len(u.st.GetIsr())) >= max(u.st.GetMinInsync(), 1)
		u.mu.Unlock()
		if !leading {
			// Not NOT_LEADER, which says nothing was applied and invites a
			// blind retry: this write is in the log and may be kept by the
			// new leader; only a retry with an idempotence key is safe.
			return errs.Wrapf(errs.ErrUnavailable, "storage: leadership of %s moved (epoch %d) before the write reached the in-sync replicas; it may or may not be kept", logid.Describe(l.id), epoch)
		}
		if hw > offset && enough {
			return nil
		}
		select {
		case <-changed:
		case <-e.stopped:
			// Its followers go to the next leader and will not confirm
			// it here: answer now rather than at the timeout, which held
			// a stopping node's shutdown for as long (15 s per write).
			return errs.Wrapf(errs.ErrUnavailable, "storage: node %s is stopping before the write to %s reached the in-sync replicas; it may or may not be kept", e.cluster.Node, logid.Describe(l.id))
		case <-ctx.Done():
			return errs.Wrapf(errs.ErrUnavailable, "storage: %s: the in-sync replicas did not confirm the write in time: %v", logid.Describe(l.id), ctx.Err())
		}
	}
}

// applyPlacement brings the units this node replicates in line with the
// placement: it starts leading, following or neither.
func (e *Engine) applyPlacement() {
	for _, st := range e.cluster.Placement.Units() {
		key := placement.UnitKey(st.GetUnit())
		replica := slices.Contains(st.GetReplicas(), e.cluster.Node) || slices.Contains(st.GetTarget(), e.cluster.Node)
		e.units.mu.Lock()
		u := e.units.byKey[key]
		if u == nil && replica {
			u = &unit{id: st.GetUnit(), key: key, hwChanged: make(chan struct{})}
			e.units.byKey[key] = u
		}
		e.units.mu.Unlock()
		if u == nil {
			continue
		}
		e.applyUnit(u, st, replica)
	}
	e.dropMovedAway()
}

// dropMovedAway deletes this node's copies of units the placement has moved
// to other nodes: their placement exists and names this node neither as a
// replica nor as a target, which is positive evidence that the copy is no
// longer needed (a unit without a placement is left alone).
func (e *Engine) dropMovedAway() {
	e.units.mu.Lock()
	var keys []string
	for key, logs := range e.units.logs {
		if len(logs) > 0 {
			keys = append(keys, key)
		}
	}
	e.units.mu.Unlock()
	for _, key := range keys {
		u, ok := placement.ParseUnitKey(key)
		if !ok {
			continue
		}
		st, placed := e.cluster.Placement.Unit(u)
		if !placed || slices.Contains(st.GetReplicas(), e.cluster.Node) || slices.Contains(st.GetTarget(), e.cluster.Node) {
			continue
		}
		for _, id := range e.units.logsOf(key) {
			e.logger.Info("storage: deleting the copy of a log whose unit moved to other nodes", "log", logid.Key(id), "unit", key, "replicas", st.GetReplicas())
			if err := e.DeleteLog(id); err != nil {
				e.logger.Error("storage: deleting a moved log", "log", logid.Key(id), "err", err)
			}
		}
		e.units.mu.Lock()
		delete(e.units.byKey, key)
		e.units.mu.Unlock()
	}
}

// applyUnit moves one unit to the placement st.
func (e *Engine) applyUnit(u *unit, st placement.State, replica bool) {
	u.mu.Lock()
	follow := e.applyUnitLocked(u, st, replica)
	u.mu.Unlock()
	e.fetchers.want(st.GetLeader(), follow)
}

func (e *Engine) applyUnitLocked(u *unit, st placement.State, replica bool) (follow bool) {
	prev := u.st
	u.st = st
	lead := replica && st.GetLeader() == e.cluster.Node
	follow = replica && !lead && st.GetLeader() != ""
	switch {
	case lead && (!u.leading || prev.GetLeaderEpoch() != st.GetLeaderEpoch()):
		e.becomeLeader(u, st.PartitionState)
	case !lead && u.leading:
		e.logger.Info("storage: no longer leading", "unit", u.key, "epoch", st.GetLeaderEpoch(), "leader", st.GetLeader())
		u.leading = false
		u.signalHW() // writes waiting for replication learn the leader moved
	}
	if follow && (!u.following || prev.GetLeaderEpoch() != st.GetLeaderEpoch() || prev.GetLeader() != st.GetLeader()) {
		u.truncated = false
		e.logger.Info("storage: following", "unit", u.key, "leader", st.GetLeader(), "epoch", st.GetLeaderEpoch())
	}
	u.following = follow
	if lead {
		// In-sync replicas may have changed: waiting writes recompute.
		u.signalHW()
	}
	return follow
}

// becomeLeader starts leading epoch st.LeaderEpoch; u.mu is held.
func (e *Engine) becomeLeader(u *unit, st *metadatav1.PartitionState) {
	u.leading, u.following = true, false
	u.pendingISR = nil
	u.followers = map[string]*followerProgress{}
	u.epochStart = map[string]int64{}
	now := time.Now()
	for _, id := range e.units.logsOf(u.key) {
		l, err := e.open(context.Background(), id, false, storagev1.Durability_DURABILITY_UNSPECIFIED)
		if err != nil || l == nil {
			e.logger.Warn("storage: opening a log to lead it", "log", logid.Key(id), "err", err)
			continue
		}
		end := l.NextOffset()
		u.epochStart[logid.Key(id)] = end
		e.forgetTailState(id)
		if err := l.AssignEpoch(st.GetLeaderEpoch(), end); err != nil {
			e.logger.Error("storage: recording the leader epoch", "log", logid.Key(id), "epoch", st.GetLeaderEpoch(), "err", err)
		}
	}
	for _, n := range st.GetReplicas() {
		if n != e.cluster.Node {
			u.followers[n] = &followerProgress{pos: map[string]int64{}, endAtLastFetch: map[string]int64{}, lastCaughtUp: now}
		}
	}
	e.logger.Info("storage: leading", "unit", u.key, "epoch", st.GetLeaderEpoch(), "isr", st.GetIsr())
}

// placementLoop follows the placement until ctx ends.
func (e *Engine) placementLoop(ctx context.Context) {
	for {
		changed := e.cluster.Placement.Changed()
		e.applyPlacement()
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}
