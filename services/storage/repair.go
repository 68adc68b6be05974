package storage

import (
	"context"
	"errors"
	"math"
	"slices"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	"github.com/opendms/dms/services/errs"
	"github.com/opendms/dms/services/placement"
	"github.com/opendms/dms/services/storage/logid"
	"github.com/opendms/dms/services/storage/partitionlog"
)

// Repair of damaged copies from another replica.
//
// partitionlog marks a damaged range of a log lost (see "Damage" in its
// doc.go) and tells the engine through Options.OnLost. A replicated log
// then gets those offsets back from a replica that has them:
//
//   - A follower keeps its copy as it is and asks its leader for the lost
//     range: its fetch for the log starts at the range's first offset. The
//     leader takes a fetch position that moved back below the high
//     watermark as a follower that lost data, and drops it from the in-sync
//     replicas at its next check (meanwhile the high watermark holds at the
//     range's start, so writes wait a moment rather than be acknowledged
//     without that copy, which fetches nothing new while it asks for the
//     range). Once the follower is out of them (so it
//     can no longer be elected without the range) and the leader's answer
//     holds the whole range intact, the follower truncates its log to the
//     start of the first batch of that answer and appends what came; the
//     rest follows through ordinary fetches, and the follower rejoins the
//     in-sync replicas when it has caught up. Truncating re-fetches
//     everything after the damage, which costs network, not correctness; a
//     ranged replace of a sealed segment below intact data would save that
//     but needs a segment rewrite beside readers, which partitionlog does
//     not have. A follower whose leader answers without the range (its copy
//     is lost too) gives up after repairMisses answers that had room for it
//     and keeps its lost range.
//   - A leader whose copy of a replicated log is damaged does not serve the
//     range as data, neither to followers (ReadBatches stops at the range)
//     nor to readers: a read that meets it answers NOT_LEADER while an
//     alive in-sync follower has it, and the leader hands the unit to that
//     follower (a new leader epoch, itself out of the in-sync replicas),
//     after which it repairs its copy as a follower. A follower that has the
//     range never truncates it because the leader's copy is damaged.
//   - A range no in-sync follower has (a follower was down when it was
//     written, or lost it too) stays lost: readers skip it and delivery
//     records it, and a follower that fetches it gets it as a
//     BATCH_FORMAT_LOST batch, which it stores as lost (AppendLostAt) before
//     fetching on, instead of stalling there for good. A node hands a unit
//     off at most once for a range, and never for one it sent as lost
//     (settled): a follower past such a range may hold it only as lost.

// repairMisses is how many fetch answers without the lost range a follower
// waits for before it gives up repairing from that leader.
const repairMisses = 20

var errPlacementChanged = errors.New("storage: the placement changed meanwhile")

// lostCopy is a range of a log this node holds as lost, waiting for a
// replica's copy.
type lostCopy struct {
	from, to int64
	misses   int
}

// repairs are the lost ranges of this node's logs, by log key.
type repairs struct {
	mu    sync.Mutex
	byLog map[string]*lostCopy
	// settled are lost ranges, by log key, that this node no longer hands
	// a unit off for: it did once already, or it told a follower that no
	// replica has them. A follower that has such a range may have it as
	// lost too, and handing off again would move the leadership back and
	// forth for every reader of the range.
	settled map[string][]lostCopy
	kick    chan struct{}
	counts  damageCounters
}

func newRepairs() *repairs {
	return &repairs{byLog: map[string]*lostCopy{}, settled: map[string][]lostCopy{}, kick: make(chan struct{}, 1)}
}

// settle stops hand-offs for a lost range of log k.
func (e *Engine) settle(k string, c lostCopy) {
	e.repairs.mu.Lock()
	defer e.repairs.mu.Unlock()
	e.repairs.settled[k] = append(e.repairs.settled[k], lostCopy{from: c.from, to: c.to})
}

// isSettled reports whether c overlaps a settled range of log k.
func (e *Engine) isSettled(k string, c lostCopy) bool {
	e.repairs.mu.Lock()
	defer e.repairs.mu.Unlock()
	return slices.ContainsFunc(e.repairs.settled[k], func(s lostCopy) bool { return s.from <= c.to && c.from <= s.to })
}

// noteLost records a lost range of a log (OnLost of partitionlog).
func (e *Engine) noteLost(id logid.ID, from, to int64) {
	if e.cluster == nil {
		return // no replica to repair from
	}
	rs := e.repairs
	rs.mu.Lock()
	k := logid.Key(id)
	if c := rs.byLog[k]; c != nil {
		c.from, c.to = min(c.from, from), max(c.to, to)
	} else {
		rs.byLog[k] = &lostCopy{from: from, to: to}
	}
	rs.mu.Unlock()
	select {
	case rs.kick <- struct{}{}:
	default:
	}
}

// pendingRepair returns the lost range of a log waiting for repair.
func (e *Engine) pendingRepair(key string) (lostCopy, bool) {
	e.repairs.mu.Lock()
	defer e.repairs.mu.Unlock()
	if c := e.repairs.byLog[key]; c != nil {
		return *c, true
	}
	return lostCopy{}, false
}

// repairDone forgets a log's lost range (repaired, or given up).
func (e *Engine) repairDone(key string) {
	e.repairs.mu.Lock()
	delete(e.repairs.byLog, key)
	e.repairs.mu.Unlock()
}

// repairMissed counts a fetch answer without the lost range and reports
// whether to give up.
func (e *Engine) repairMissed(key string) bool {
	e.repairs.mu.Lock()
	defer e.repairs.mu.Unlock()
	c := e.repairs.byLog[key]
	if c == nil {
		return false
	}
	c.misses++
	return c.misses >= repairMisses
}

// fetchFrom is where a follower fetches a log from: its end, or the start
// of a lost range it waits to repair.
func (e *Engine) fetchFrom(l *openLog) int64 {
	next := l.NextOffset()
	if c, ok := e.pendingRepair(logid.Key(l.id)); ok && c.from < next && c.from >= l.StartOffset() {
		return c.from
	}
	return next
}

// repairFromFetch repairs a follower's lost range from what its leader sent
// of the log, if the answer holds the range and this node is out of the
// in-sync replicas; see the comment at the top of this file.
func (fs *fetchers) repairFromFetch(l *openLog, lr *storagev1.FetchLogResult, inISR, full bool) error {
	e := fs.e
	key := logid.Key(l.id)
	c, ok := e.pendingRepair(key)
	if !ok {
		return nil
	}
	if c.from >= l.NextOffset() || c.from < l.StartOffset() || c.from < lr.GetStartOffset() {
		e.repairDone(key) // truncated away meanwhile, or expired (here or at the leader)
		return nil
	}
	bs := lr.GetBatches()
	end, bytes := int64(-1), 0
	if len(bs) > 0 && bs[0].GetBaseOffset() <= c.from && bs[0].GetFormat() != storagev1.BatchFormat_BATCH_FORMAT_LOST {
		end = bs[0].GetBaseOffset()
		for _, b := range bs {
			if b.GetBaseOffset() != end || b.GetFormat() == storagev1.BatchFormat_BATCH_FORMAT_LOST {
				break
			}
			end += int64(b.GetRecordCount())
			bytes += len(b.GetData()) + len(b.GetSealed())
		}
	}
	if len(bs) > 0 && bs[0].GetFormat() == storagev1.BatchFormat_BATCH_FORMAT_LOST && bs[0].GetBaseOffset() <= c.from {
		// The leader says no replica has the range.
		e.logger.Error("storage: no replica has the offsets this copy lost; they stay lost",
			"log", logid.Key(l.id), "fromOffset", c.from, "toOffset", c.to)
		e.repairDone(key)
		return nil
	}
	// The whole range, or as much as a fetch's byte budget carries of an
	// intact run from its start.
	covered := end > c.to || (end > c.from && bytes >= defaultFetchBytes/2)
	if !covered {
		// Only an answer with room to spare says the leader cannot send
		// the range; a full one may simply not have reached this log.
		if !full && lr.GetEndOffset() > c.from && e.repairMissed(key) {
			e.logger.Error("storage: the leader's copy lacks the offsets this replica lost too; they stay lost",
				"log", logid.Key(l.id), "fromOffset", c.from, "toOffset", c.to)
			e.repairDone(key)
		}
		return nil
	}
	if inISR {
		return nil // until the leader drops this copy from the in-sync replicas
	}
	base := bs[0].GetBaseOffset()
	e.logger.Warn("storage: repairing a damaged copy from the leader's: truncating to the damage and fetching again",
		"log", logid.Key(l.id), "fromOffset", c.from, "toOffset", c.to, "truncateTo", base, "end", l.NextOffset())
	if _, err := l.TruncateTo(fs.ctx, base); err != nil {
		return err
	}
	e.repairDone(key)
	e.repairs.counts.repaired(l.id, c.to-c.from+1)
	e.reportDamage(DamageEvent{Log: l.id, From: c.from, To: c.to, Repaired: true})
	return nil
}

// repairLoop hands off the leadership of units whose copy here is damaged
// while a follower has the range, until ctx ends.
func (e *Engine) repairLoop(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-e.repairs.kick:
		case <-t.C:
		}
		e.repairs.mu.Lock()
		pending := map[string]lostCopy{}
		for k, c := range e.repairs.byLog {
			pending[k] = *c
		}
		e.repairs.mu.Unlock()
		for k, c := range pending {
			l := e.openedLogByKey(k)
			if l == nil {
				continue
			}
			u := e.units.get(e.unitOf(l.id))
			if u == nil {
				continue
			}
			if next, _ := e.handOffTarget(u, k, c); next != "" {
				// A placement that changed meanwhile is most often this
				// hand-off, not yet applied here; the next round sees.
				if err := e.handOff(ctx, u, next, k, c); err != nil && ctx.Err() == nil && !errors.Is(err, errPlacementChanged) {
					e.logger.Warn("storage: handing off the leadership of a damaged copy", "unit", u.key, "to", next, "err", err)
				}
			}
		}
	}
}

// handOffTarget returns the in-sync follower a leader whose copy of log k
// lost c hands u to: alive, and past the range. "" when this node does not
// lead u or no follower qualifies.
// unknown reports that an alive in-sync follower has not fetched the log
// from this leader yet, so it may still turn out to have the range.
func (e *Engine) handOffTarget(u *unit, k string, c lostCopy) (target string, unknown bool) {
	if e.isSettled(k, c) {
		return "", false
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if !u.leading || e.stopping.Load() || !e.cluster.SessionValid() {
		return "", false
	}
	for _, n := range u.st.GetReplicas() {
		if n == e.cluster.Node || !slices.Contains(u.st.GetIsr(), n) || !e.cluster.Placement.Alive(n) {
			continue
		}
		f := u.followers[n]
		if f == nil {
			unknown = true
			continue
		}
		pos, known := f.pos[k]
		if !known {
			unknown = true
			continue
		}
		if pos > c.to {
			return n, false
		}
	}
	return "", unknown
}

// handOff makes next the leader of u in a new epoch, with this node out of
// the in-sync replicas, provided the placement did not change meanwhile.
func (e *Engine) handOff(ctx context.Context, u *unit, next, k string, c lostCopy) error {
	u.mu.Lock()
	cur := u.st
	u.mu.Unlock()
	st := proto.CloneOf(cur.PartitionState)
	st.Leader = next
	st.LeaderEpoch++
	st.Isr = slices.DeleteFunc(slices.Clone(st.GetIsr()), func(n string) bool { return n == e.cluster.Node })
	value, err := proto.Marshal(st)
	if err != nil {
		return err
	}
	key := placement.PlacementKey(cur.GetUnit())
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := e.cluster.Etcd.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", cur.ModRevision)).Then(clientv3.OpPut(key, string(value))).Commit()
	if err != nil {
		return err
	}
	if !resp.Succeeded {
		return errPlacementChanged
	}
	e.settle(k, c)
	e.logger.Error("storage: DAMAGED DATA on the leader: leadership handed to an in-sync replica that has the range; this copy is repaired from it as a follower",
		"unit", u.key, "log", k, "fromOffset", c.from, "toOffset", c.to, "newLeader", next, "epoch", st.GetLeaderEpoch())
	return e.cluster.Placement.WaitForRevision(ctx, resp.Header.Revision)
}

// leaderLost decides what a read that met lost offsets on this leader
// answers: NOT_LEADER while an in-sync follower has the range (the
// leadership moves there; the reader asks again), UNAVAILABLE while an
// alive in-sync follower has not said how far it is, nil when no replica
// can repair it and the reader is to skip it.
func (e *Engine) leaderLost(u *unit, id logid.ID, err error) error {
	var lost *partitionlog.LostRangeError
	if u == nil || e.cluster == nil || !errors.As(err, &lost) {
		return nil
	}
	k := logid.Key(id)
	c := lostCopy{from: lost.From, to: lost.To}
	if pc, ok := e.pendingRepair(k); ok {
		c.to = max(c.to, pc.to)
	}
	next, unknown := e.handOffTarget(u, k, c)
	if unknown && next == "" {
		// A new leader hears from its followers within a fetch wait.
		return errs.Wrapf(errs.ErrUnavailable, "storage: offsets %d to %d of %s are damaged on this node, which is learning whether an in-sync replica has them; try again", lost.From, lost.To, logid.Describe(id))
	}
	if next == "" {
		return nil
	}
	e.noteLost(id, lost.From, lost.To)
	return errs.Wrapf(errs.ErrNotLeader, "storage: offsets %d to %d of %s are damaged on this node; the leadership moves to %s, which has them", lost.From, lost.To, logid.Describe(id), next)
}

// openedLogByKey returns a log if it is open.
func (e *Engine) openedLogByKey(k string) *openLog {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.logs[k]
}

// unrepairable returns, for a follower's read of a leader's log that met a
// lost range (err), a batch standing for that range when no in-sync
// follower can have it (and every alive one has said how far it is): the
// follower then records the range lost too and fetches on past it, rather
// than stall there for good (and drag the unit below its minimum of
// in-sync replicas). nil otherwise: no lost range, or the leadership is to
// move to a follower that has it.
func (e *Engine) unrepairable(u *unit, k string, err error) *partitionlog.BatchView {
	var lost *partitionlog.LostRangeError
	if !errors.As(err, &lost) {
		return nil
	}
	c := lostCopy{from: lost.From, to: lost.To}
	if next, unknown := e.handOffTarget(u, k, c); next != "" || unknown {
		return nil
	}
	e.settle(k, c)
	return &partitionlog.BatchView{BaseOffset: lost.From, Count: int(min(lost.To-lost.From+1, math.MaxInt32)), Format: lostFormat}
}
