package storage

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	"github.com/opendms/dms/services/errs"
	"github.com/opendms/dms/services/placement"
	"github.com/opendms/dms/services/storage/logid"
	"github.com/opendms/dms/services/storage/partitionlog"
)

// fetchWait is how long a fetch waits at the leader for new data: long
// enough to keep an idle cluster quiet, short enough to notice changes.
const fetchWait = 500 * time.Millisecond

// fetchers runs one fetch loop per leader node this node follows units of,
// so that one request carries every unit the two nodes share (as Kafka's
// replica fetcher threads do).
type fetchers struct {
	e       *Engine
	ctx     context.Context
	mu      sync.Mutex
	running map[string]bool
	wg      sync.WaitGroup
}

func newFetchers(e *Engine) *fetchers { return &fetchers{e: e, running: map[string]bool{}} }

func (fs *fetchers) start(ctx context.Context) { fs.ctx = ctx }

// want makes sure a fetch loop runs for leader when follow is set.
func (fs *fetchers) want(leader string, follow bool) {
	if !follow || leader == "" || fs.ctx == nil {
		return
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.running[leader] {
		return
	}
	fs.running[leader] = true
	fs.wg.Go(func() { fs.loop(leader) })
}

// followedOn returns the units this node follows whose leader is node.
func (fs *fetchers) followedOn(node string) []*unit {
	var out []*unit
	for _, u := range fs.e.units.all() {
		u.mu.Lock()
		if u.following && u.st.GetLeader() == node {
			out = append(out, u)
		}
		u.mu.Unlock()
	}
	return out
}

// loop fetches from one leader until no unit follows it or the engine
// stops.
func (fs *fetchers) loop(leader string) {
	e := fs.e
	backoff := 50 * time.Millisecond
	for fs.ctx.Err() == nil {
		followed := fs.followedOn(leader)
		if len(followed) == 0 {
			fs.mu.Lock()
			// Checked again under the lock, so that want never misses a loop
			// that is about to end.
			if len(fs.followedOn(leader)) == 0 {
				delete(fs.running, leader)
				fs.mu.Unlock()
				return
			}
			fs.mu.Unlock()
			continue
		}
		client, err := e.cluster.Dial(leader)
		if err == nil {
			err = fs.fetchOnce(client, leader, followed)
		}
		if err != nil {
			if fs.ctx.Err() == nil {
				e.logger.Debug("storage: fetching from leader", "leader", leader, "err", err)
			}
			select {
			case <-fs.ctx.Done():
			case <-time.After(backoff):
			case <-e.cluster.Placement.Changed():
			}
			backoff = min(backoff*2, time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
	}
}

// fetchOnce truncates the units that follow a new epoch, then fetches once
// and applies what came.
func (fs *fetchers) fetchOnce(client storagev1.StorageServiceClient, leader string, followed []*unit) error {
	e := fs.e
	req := &storagev1.FetchRequest{Follower: e.cluster.Node, MaxWait: durationpb.New(fetchWait), MaxBytes: defaultFetchBytes, AcceptsSealed: true}
	epochs := map[string]int64{}
	for _, u := range followed {
		u.mu.Lock()
		epoch, truncated := u.st.GetLeaderEpoch(), u.truncated
		u.mu.Unlock()
		if !truncated {
			if err := fs.truncate(client, u, epoch); err != nil {
				return err
			}
		}
		epochs[u.key] = epoch
		fu := &storagev1.FetchUnit{Unit: u.id, LeaderEpoch: epoch}
		for _, id := range e.units.logsOf(u.key) {
			l := e.openedOrOpen(id)
			if l == nil {
				continue
			}
			fu.Logs = append(fu.Logs, &storagev1.FetchLog{Log: id, FetchOffset: e.fetchFrom(l)})
		}
		req.Units = append(req.Units, fu)
	}
	ctx, cancel := context.WithTimeout(fs.ctx, fetchWait+5*time.Second)
	defer cancel()
	resp, err := client.Fetch(ctx, req)
	if err != nil {
		return err
	}
	// An answer that carries less than half the byte budget was not cut
	// short by it: a log it has nothing of had nothing to send.
	payload := 0
	for _, res := range resp.GetUnits() {
		for _, lr := range res.GetLogs() {
			for _, b := range lr.GetBatches() {
				payload += len(b.GetData())
			}
		}
	}
	full := payload >= defaultFetchBytes/2
	var wg sync.WaitGroup
	errCh := make(chan error, len(resp.GetUnits())+1)
	for _, res := range resp.GetUnits() {
		if res.GetErrorReason() != "" {
			// The leader moved; the placement will say where.
			errCh <- errors.New(res.GetErrorReason() + ": " + res.GetErrorMessage())
			continue
		}
		u := e.units.get(placement.UnitKey(res.GetUnit()))
		if u == nil {
			continue
		}
		wg.Go(func() {
			if err := fs.applyUnit(u, leader, epochs[u.key], res.GetLogs(), full); err != nil {
				errCh <- err
			}
		})
	}
	wg.Wait()
	close(errCh)
	return <-errCh
}

// applyUnit applies what a leader sent of one unit's logs, provided the unit
// still follows that leader in the epoch the fetch was made in: an answer
// that arrives after the unit moved on (to a new leader, whose fetch loop
// may already be applying) is dropped, not written over the new leader's.
// full says the fetch answer was cut short by its byte budget.
func (fs *fetchers) applyUnit(u *unit, leader string, epoch int64, logs []*storagev1.FetchLogResult, full bool) error {
	u.applyMu.RLock()
	defer u.applyMu.RUnlock()
	u.mu.Lock()
	current := u.following && u.truncated && u.st.GetLeader() == leader && u.st.GetLeaderEpoch() == epoch
	inISR := slices.Contains(u.st.GetIsr(), fs.e.cluster.Node)
	u.mu.Unlock()
	if !current {
		return nil
	}
	var wg sync.WaitGroup
	errCh := make(chan error, 1)
	for _, lr := range logs {
		wg.Go(func() {
			if err := fs.apply(lr, inISR, full); err != nil {
				fs.e.logger.Warn("storage: applying fetched batches", "log", logid.Key(lr.GetLog()), "err", err)
				select {
				case errCh <- err:
				default:
				}
			}
		})
	}
	wg.Wait()
	close(errCh)
	return <-errCh
}

// apply makes a local log match what the leader sent of it; inISR says
// whether this node is among the unit's in-sync replicas (a damaged copy is
// repaired only once it is not, see repair.go), full whether the answer was
// cut short by its byte budget.
func (fs *fetchers) apply(lr *storagev1.FetchLogResult, inISR, full bool) error {
	e := fs.e
	id := lr.GetLog()
	if lr.GetDeleted() {
		// The leader deleted the log (it says so only when it did).
		e.logger.Info("storage: deleting a follower's copy of a log its leader deleted", "log", logid.Key(id))
		return e.DeleteLog(id)
	}
	l, err := e.open(fs.ctx, id, true, lr.GetDurability())
	if err != nil {
		return err
	}
	switch next := l.NextOffset(); {
	case next > lr.GetEndOffset() && lr.GetEndOffset() >= l.StartOffset():
		// Ahead of the leader, which holds everything committed: the rest
		// was never committed (or an unclean election gave it up).
		e.logger.Warn("storage: truncating a follower's log to its leader's end",
			"log", logid.Key(id), "from", next, "to", lr.GetEndOffset())
		if _, err := l.TruncateTo(fs.ctx, lr.GetEndOffset()); err != nil {
			return err
		}
	case next < lr.GetStartOffset() || next > lr.GetEndOffset():
		// Behind the leader's retention (or wholly beyond its end): start
		// over at the leader's start.
		e.logger.Info("storage: a follower's log starts over at its leader's start",
			"log", logid.Key(id), "from", next, "start", lr.GetStartOffset(), "end", lr.GetEndOffset())
		if err := l.Reset(fs.ctx, lr.GetStartOffset()); err != nil {
			return err
		}
	}
	if start := lr.GetStartOffset(); start > l.StartOffset() && logid.IsInternal(id) {
		// The owner trimmed the leader's copy after a checkpoint; this one
		// follows (queue partitions expire by retention on each replica).
		if _, err := l.TrimBefore(start); err != nil {
			return err
		}
	}
	if err := fs.repairFromFetch(l, lr, inISR, full); err != nil {
		return err
	}
	for _, b := range lr.GetBatches() {
		next := l.NextOffset()
		if b.GetBaseOffset()+int64(b.GetRecordCount()) <= next {
			continue
		}
		if b.GetFormat() == storagev1.BatchFormat_BATCH_FORMAT_LOST {
			// The leader lost these offsets and no replica has them: so
			// does this copy (never over data it holds).
			if b.GetBaseOffset() != next {
				return fmt.Errorf("storage: the leader lost offsets %d to %d of %s; this copy ends at %d", b.GetBaseOffset(), b.GetBaseOffset()+int64(b.GetRecordCount())-1, logid.Key(id), next)
			}
			e.logger.Error("storage: the leader lost offsets to damage on disk and no replica has them; this copy records them lost too",
				"log", logid.Key(id), "fromOffset", b.GetBaseOffset(), "toOffset", b.GetBaseOffset()+int64(b.GetRecordCount())-1)
			if err := l.AppendLostAt(fs.ctx, b.GetBaseOffset(), int64(b.GetRecordCount()), "offsets lost on the leader (damaged on disk, no replica had them)"); err != nil {
				return err
			}
			continue
		}
		if b.GetBaseOffset() < next {
			// Batch boundaries differ (this node led an earlier epoch):
			// cut back to the leader's boundary and take its batch.
			if _, err := l.TruncateTo(fs.ctx, b.GetBaseOffset()); err != nil {
				return err
			}
		}
		if len(b.GetSealed()) > 0 {
			// Copied as the leader stores it: the project's data key (or
			// the master key) that sealed it opens it here too.
			if err := l.AppendSealedBatchAt(fs.ctx, b.GetBaseOffset(), b.GetSealed()); err != nil {
				return err
			}
			continue
		}
		format, err := logFormat(b.GetFormat())
		if err != nil {
			return err
		}
		err = l.AppendBatchAt(fs.ctx, b.GetBaseOffset(), partitionlog.Batch{
			Format: format, Count: int(b.GetRecordCount()), FirstTimestamp: b.GetFirstTimestampMs(), MaxTimestamp: b.GetMaxTimestampMs(), Payload: b.GetData(),
		})
		if err != nil {
			return err
		}
	}
	// Epochs the leader started, within what this copy now holds.
	latest, has := l.LatestEpoch()
	for _, ep := range lr.GetEpochs() {
		if (has && ep.GetEpoch() <= latest.Epoch) || ep.GetStartOffset() > l.NextOffset() {
			continue
		}
		if err := l.AssignEpoch(ep.GetEpoch(), ep.GetStartOffset()); err != nil {
			return err
		}
		latest, has = partitionlog.EpochEntry{Epoch: ep.GetEpoch(), StartOffset: ep.GetStartOffset()}, true
	}
	return nil
}

// truncate cuts every log of u back to where it diverges from the new
// leader's (KIP-101/KIP-279), before the first fetch in a new epoch: what
// this node has beyond was never committed.
func (fs *fetchers) truncate(client storagev1.StorageServiceClient, u *unit, epoch int64) error {
	e := fs.e
	type query struct {
		l      *openLog
		latest partitionlog.EpochEntry
	}
	var queries []query
	req := &storagev1.OffsetForLeaderEpochRequest{Unit: u.id, LeaderEpoch: epoch}
	u.applyMu.Lock() // no fetched batches land while the logs are compared
	defer u.applyMu.Unlock()
	for _, id := range e.units.logsOf(u.key) {
		l, err := e.open(fs.ctx, id, false, storagev1.Durability_DURABILITY_UNSPECIFIED)
		if err != nil {
			// A log this node cannot look at now is not compared, and the
			// unit does not fetch until it can be.
			return err
		}
		if l == nil {
			continue
		}
		latest, ok := l.LatestEpoch()
		if !ok {
			continue // no history: written before replication, nothing to compare
		}
		queries = append(queries, query{l, latest})
		req.Queries = append(req.Queries, &storagev1.EpochQuery{Log: id, Epoch: latest.Epoch})
	}
	if len(queries) > 0 {
		ctx, cancel := context.WithTimeout(fs.ctx, 10*time.Second)
		resp, err := client.OffsetForLeaderEpoch(ctx, req)
		cancel()
		if err != nil {
			return err
		}
		if r := resp.GetErrorReason(); r != "" {
			return errs.Wrapf(errs.ErrNotLeader, "storage: %s asking where %s diverges", r, u.key)
		}
		for i, q := range queries {
			end := resp.GetEnds()[i]
			target := q.l.NextOffset()
			switch {
			case end.GetEpoch() < 0:
				// The leader has no such log: nothing to compare with. The
				// copy is kept; once the leader writes the log, its epochs
				// say where the two differ.
				continue
			case end.GetEpoch() == q.latest.Epoch:
				target = min(target, end.GetEndOffset())
			default:
				_, mine := q.l.EndOffsetForEpoch(end.GetEpoch())
				target = min(target, end.GetEndOffset(), mine)
			}
			if target < q.l.NextOffset() {
				e.logger.Warn("storage: truncating a follower's log where it diverges from the new leader's",
					"log", logid.Key(q.l.id), "from", q.l.NextOffset(), "to", target, "epoch", epoch,
					"my_latest_epoch", q.latest.Epoch, "leader_epoch", end.GetEpoch(), "leader_end", end.GetEndOffset())
				if _, err := q.l.TruncateTo(fs.ctx, target); err != nil {
					return err
				}
			}
		}
	}
	u.mu.Lock()
	if u.st.GetLeaderEpoch() == epoch {
		u.truncated = true
	}
	u.mu.Unlock()
	return nil
}
