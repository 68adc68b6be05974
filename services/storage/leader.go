package storage

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	"github.com/opendms/dms/services/errs"
	"github.com/opendms/dms/services/placement"
	"github.com/opendms/dms/services/storage/logid"
	"github.com/opendms/dms/services/storage/partitionlog"
)

// Bounds of a follower's fetch.
const (
	defaultFetchBytes = 4 << 20
	maxFetchWait      = 5 * time.Second
)

// Fetch serves a follower: it records how far the follower is (its fetch
// offsets are its acknowledgements), moves the high watermarks, and
// returns what the follower lacks, waiting up to max_wait for something.
func (e *Engine) Fetch(ctx context.Context, req *storagev1.FetchRequest) (*storagev1.FetchResponse, error) {
	if e.cluster == nil {
		return nil, errs.Wrapf(errs.ErrNotImplemented, "storage: this engine does not replicate")
	}
	wait := min(req.GetMaxWait().AsDuration(), maxFetchWait)
	deadline := time.Now().Add(wait)
	budget := int(req.GetMaxBytes())
	if budget <= 0 {
		budget = defaultFetchBytes
	}
	acked := false
	for {
		published := e.units.publishedChan()
		resp, any := e.collectFetch(req, budget, !acked)
		acked = true
		left := time.Until(deadline)
		if any || left <= 0 {
			return resp, nil
		}
		timer := time.NewTimer(left)
		select {
		case <-published:
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return nil, ctx.Err()
		}
		timer.Stop()
	}
}

// collectFetch answers each unit of a fetch; ack records the follower's
// positions (once per fetch). any says whether a batch, a deletion or an
// error is in the answer.
func (e *Engine) collectFetch(req *storagev1.FetchRequest, budget int, ack bool) (*storagev1.FetchResponse, bool) {
	resp := &storagev1.FetchResponse{}
	any := false
	for _, fu := range req.GetUnits() {
		res := &storagev1.FetchUnitResult{Unit: fu.GetUnit()}
		resp.Units = append(resp.Units, res)
		key := placement.UnitKey(fu.GetUnit())
		u := e.units.get(key)
		if u == nil {
			res.ErrorReason, res.ErrorMessage = errs.ErrNotLeader.Reason, "this node does not replicate "+key
			any = true
			continue
		}
		u.mu.Lock()
		leading, epoch := u.leading, u.st.GetLeaderEpoch()
		u.mu.Unlock()
		switch {
		case !leading || fu.GetLeaderEpoch() > epoch:
			res.ErrorReason, res.ErrorMessage = errs.ErrNotLeader.Reason, fmt.Sprintf("this node does not lead %s in epoch %d", key, fu.GetLeaderEpoch())
			any = true
			continue
		case fu.GetLeaderEpoch() < epoch:
			res.ErrorReason, res.ErrorMessage = errs.ErrFenced.Reason, fmt.Sprintf("%s is led in epoch %d, not %d", key, epoch, fu.GetLeaderEpoch())
			any = true
			continue
		}
		asked := map[string]int64{}
		for _, fl := range fu.GetLogs() {
			asked[logid.Key(fl.GetLog())] = fl.GetFetchOffset()
		}
		if ack {
			e.recordProgress(u, req.GetFollower(), asked)
		}
		have := map[string]bool{}
		for _, id := range e.units.logsOf(key) {
			k := logid.Key(id)
			have[k] = true
			l, err := e.open(context.Background(), id, false, storagev1.Durability_DURABILITY_UNSPECIFIED)
			if err != nil || l == nil {
				continue
			}
			if err := e.stampEpoch(u, l); err != nil {
				e.logger.Warn("storage: recording the leader epoch of a log", "log", k, "err", err)
				continue
			}
			from, listed := asked[k]
			lr := &storagev1.FetchLogResult{Log: id, StartOffset: l.StartOffset(), EndOffset: l.NextOffset(), HighWatermark: u.hw(k, l.NextOffset()), Durability: l.durability}
			// The history goes with every answer, so that a follower has the
			// epochs of what it holds before it ever needs to compare them.
			for _, ep := range l.Epochs() {
				lr.Epochs = append(lr.Epochs, &storagev1.EpochStart{Epoch: ep.Epoch, StartOffset: ep.StartOffset})
			}
			if !listed {
				from = l.StartOffset()
				any = true // the follower learns of a log
			}
			if from < l.StartOffset() || from > l.NextOffset() {
				// Behind retention (or ahead, after an unclean election): the
				// follower starts over at the leader's start.
				res.Logs = append(res.Logs, lr)
				any = true
				continue
			}
			if from < l.NextOffset() && budget > 0 {
				read := l.ReadBatches
				if req.GetAcceptsSealed() {
					read = l.ReadSealedBatches
				}
				batches, err := read(from, budget)
				if lost := e.unrepairable(u, k, err); len(batches) == 0 && lost != nil {
					batches = []partitionlog.BatchView{*lost}
				} else if err != nil && !errors.Is(err, partitionlog.ErrLost) {
					e.logger.Error("storage: reading batches for a follower", "log", k, "from", from, "err", err)
				}
				for _, b := range batches {
					lr.Batches = append(lr.Batches, batchMessage(b))
					budget -= len(b.Payload) + len(b.Sealed)
				}
				if len(batches) > 0 {
					any = true
				}
			}
			// A log the follower lacks is always named, empty or not, so
			// that it creates it and counts as caught up.
			res.Logs = append(res.Logs, lr)
		}
		for k, off := range asked {
			if !have[k] && e.wasDeleted(k) {
				// The leader deleted the log: the follower's copy goes too.
				// A log the leader merely lacks is not named: whatever the
				// follower holds of it is kept until this leader writes
				// the log and its epochs say where the two differ.
				res.Logs = append(res.Logs, &storagev1.FetchLogResult{Log: idOf(fu, k), Deleted: true, EndOffset: off})
				any = true
			}
		}
	}
	return resp, any
}

// idOf finds the log id a follower named by key.
func idOf(fu *storagev1.FetchUnit, key string) logid.ID {
	for _, fl := range fu.GetLogs() {
		if logid.Key(fl.GetLog()) == key {
			return fl.GetLog()
		}
	}
	return nil
}

// recordProgress notes a follower's positions and moves the high
// watermarks.
func (e *Engine) recordProgress(u *unit, follower string, positions map[string]int64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	f := u.followers[follower]
	if f == nil {
		if !slices.Contains(u.st.GetReplicas(), follower) && !slices.Contains(u.st.GetTarget(), follower) {
			return
		}
		f = &followerProgress{pos: map[string]int64{}, endAtLastFetch: map[string]int64{}}
		u.followers[follower] = f
	}
	now := time.Now()
	f.lastFetch = now
	caughtUp := true
	for _, id := range e.units.logsOf(u.key) {
		k := logid.Key(id)
		l := e.openedLog(id)
		end := int64(0)
		if l != nil {
			end = l.NextOffset()
		}
		pos, ok := positions[k]
		if ok {
			if prev, had := f.pos[k]; had && pos < prev && pos < u.hwLocked(k, end) {
				// The follower no longer has what it acknowledged (its copy
				// was damaged and it fetches the range again, see
				// repair.go): it is out of sync at the next check.
				f.lastCaughtUp = time.Time{}
				caughtUp = false
			}
			f.pos[k] = pos
		}
		if !ok || (pos < end && pos < f.endAtLastFetch[k]) {
			caughtUp = false
		}
		f.endAtLastFetch[k] = end
	}
	if caughtUp {
		f.lastCaughtUp = now
	}
	u.signalHW()
}

// openedLog returns a log if it is open.
func (e *Engine) openedLog(id logid.ID) *openLog {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.logs[logid.Key(id)]
}

func batchMessage(b partitionlog.BatchView) *storagev1.RecordBatch {
	return &storagev1.RecordBatch{
		BaseOffset: b.BaseOffset, RecordCount: int32(b.Count), Format: formatOf(b.Format),
		FirstTimestampMs: b.FirstTimestamp, MaxTimestampMs: b.MaxTimestamp, Data: b.Payload, Sealed: b.Sealed,
	}
}

// The batch formats of the contract and of the log. lostFormat is no
// format of the log: a BatchView of it stands for a lost range that
// collectFetch sends as BATCH_FORMAT_LOST.
const (
	kafkaFormat partitionlog.Format = 1
	lostFormat  partitionlog.Format = 255
)

func formatOf(f partitionlog.Format) storagev1.BatchFormat {
	switch f {
	case kafkaFormat:
		return storagev1.BatchFormat_BATCH_FORMAT_KAFKA
	case lostFormat:
		return storagev1.BatchFormat_BATCH_FORMAT_LOST
	}
	return storagev1.BatchFormat_BATCH_FORMAT_NATIVE
}

func logFormat(f storagev1.BatchFormat) (partitionlog.Format, error) {
	switch f {
	case storagev1.BatchFormat_BATCH_FORMAT_NATIVE:
		return partitionlog.FormatRecords, nil
	case storagev1.BatchFormat_BATCH_FORMAT_KAFKA:
		return kafkaFormat, nil
	}
	return 0, errs.Wrapf(errs.ErrRequestInvalid, "storage: unknown batch format %d", f)
}

// OffsetForLeaderEpoch answers a follower about to truncate.
func (e *Engine) OffsetForLeaderEpoch(ctx context.Context, req *storagev1.OffsetForLeaderEpochRequest) (*storagev1.OffsetForLeaderEpochResponse, error) {
	if e.cluster == nil {
		return nil, errs.Wrapf(errs.ErrNotImplemented, "storage: this engine does not replicate")
	}
	key := placement.UnitKey(req.GetUnit())
	u := e.units.get(key)
	if u == nil {
		return &storagev1.OffsetForLeaderEpochResponse{ErrorReason: errs.ErrNotLeader.Reason}, nil
	}
	u.mu.Lock()
	leading, epoch := u.leading, u.st.GetLeaderEpoch()
	u.mu.Unlock()
	if !leading || req.GetLeaderEpoch() != epoch {
		reason := errs.ErrNotLeader.Reason
		if leading && req.GetLeaderEpoch() < epoch {
			reason = errs.ErrFenced.Reason
		}
		return &storagev1.OffsetForLeaderEpochResponse{ErrorReason: reason}, nil
	}
	resp := &storagev1.OffsetForLeaderEpochResponse{}
	for _, q := range req.GetQueries() {
		// Epoch -1: this node has no such log, and the follower keeps its
		// copy as it is.
		end := &storagev1.EpochEnd{Log: q.GetLog(), Epoch: -1, EndOffset: -1}
		l, err := e.open(ctx, q.GetLog(), false, storagev1.Durability_DURABILITY_UNSPECIFIED)
		if err == nil && l != nil {
			err = e.stampEpoch(u, l)
		}
		if err != nil {
			// Not an answer: a follower truncates on what the leader holds,
			// never on what it could not look at.
			return &storagev1.OffsetForLeaderEpochResponse{ErrorReason: errs.ErrUnavailable.Reason}, nil
		}
		if l != nil {
			end.Epoch, end.EndOffset = l.EndOffsetForEpoch(q.GetEpoch())
		}
		resp.Ends = append(resp.Ends, end)
	}
	return resp, nil
}

// stampEpoch records the epoch this node leads u in on one of u's logs, if
// the log's history does not have it yet: a log created (or reset) after
// this node became leader. Every offset a leader writes is then covered by
// its epoch, which is how a follower finds where its copy diverges.
func (e *Engine) stampEpoch(u *unit, l *openLog) error {
	u.mu.Lock()
	leading, epoch := u.leading, u.st.GetLeaderEpoch()
	u.mu.Unlock()
	if !leading {
		return nil
	}
	if latest, ok := l.LatestEpoch(); ok && latest.Epoch >= epoch {
		return nil
	}
	return l.AssignEpoch(epoch, l.NextOffset())
}

// wasDeleted reports whether this node deleted a log since it started.
func (e *Engine) wasDeleted(logKey string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.deleted[logKey]
}

func (e *Engine) openedOrOpen(id logid.ID) *openLog {
	l, err := e.open(context.Background(), id, false, storagev1.Durability_DURABILITY_UNSPECIFIED)
	if err != nil {
		return nil
	}
	return l
}

// isrLoop lets the leader of each unit shrink its in-sync replicas by the
// followers that fell behind, and grow them by the followers that caught
// up, until ctx ends.
func (e *Engine) isrLoop(ctx context.Context) {
	t := time.NewTicker(e.cfg.ReplicaLagTime / 4)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, u := range e.units.all() {
			if next := e.nextISR(u); next != nil {
				if err := e.changeISR(ctx, u, next); err != nil && ctx.Err() == nil {
					e.logger.Warn("storage: changing the in-sync replicas", "unit", u.key, "err", err)
				}
			}
		}
	}
}

// nextISR returns the in-sync replicas a leader wants for u, or nil for no
// change.
func (e *Engine) nextISR(u *unit) []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	if !u.leading || !e.cluster.SessionValid() || e.stopping.Load() {
		return nil
	}
	now := time.Now()
	isr := slices.Clone(u.st.GetIsr())
	changed := false
	// Shrink: followers that have not caught up for the lag time.
	isr = slices.DeleteFunc(isr, func(n string) bool {
		f := u.followers[n]
		out := n != e.cluster.Node && (f == nil || now.Sub(f.lastCaughtUp) > e.cfg.ReplicaLagTime)
		changed = changed || out
		return out
	})
	// Grow: followers that have everything below the high watermark of
	// every log, including what earlier epochs left.
	candidates := append(slices.Clone(u.st.GetReplicas()), u.st.GetTarget()...)
	for _, n := range candidates {
		f := u.followers[n]
		// A node that is not registered is on its way out (or cut off
		// from etcd): the controller takes it out, so it is not taken in.
		if slices.Contains(isr, n) || f == nil || now.Sub(f.lastCaughtUp) > e.cfg.ReplicaLagTime/2 || !e.cluster.Placement.Alive(n) {
			continue
		}
		inSync := true
		for _, id := range e.units.logsOf(u.key) {
			k := logid.Key(id)
			l := e.openedLog(id)
			if l == nil {
				continue
			}
			if f.pos[k] < max(u.hwLocked(k, l.NextOffset()), u.epochStart[k]) {
				inSync = false
				break
			}
		}
		if inSync {
			isr = append(isr, n)
			changed = true
		}
	}
	if !changed {
		return nil
	}
	return isr
}

// changeISR writes a unit's new in-sync replicas, provided its placement
// did not change meanwhile (the same leader and epoch).
func (e *Engine) changeISR(ctx context.Context, u *unit, isr []string) error {
	u.mu.Lock()
	cur := u.st
	u.mu.Unlock()
	next := proto.CloneOf(cur.PartitionState)
	next.Isr = isr
	value, err := proto.Marshal(next)
	if err != nil {
		return err
	}
	key := placement.PlacementKey(cur.GetUnit())
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	// From now on the high watermark waits for the proposed replicas too.
	u.mu.Lock()
	u.pendingISR, u.pendingRev = isr, 0
	u.mu.Unlock()
	resp, err := e.cluster.Etcd.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", cur.ModRevision)).Then(clientv3.OpPut(key, string(value))).Commit()
	u.mu.Lock()
	switch {
	case err == nil && resp.Succeeded:
		u.pendingRev = resp.Header.Revision
	case err == nil:
		u.pendingISR = nil // not written: the placement changed meanwhile
	default:
		// The write may have happened: the proposal keeps counting until
		// any newer placement is seen here (hwMembers).
		u.pendingRev = cur.ModRevision + 1
	}
	u.mu.Unlock()
	if err != nil {
		return err
	}
	if !resp.Succeeded {
		return errors.New("the placement changed meanwhile")
	}
	e.logger.Info("storage: in-sync replicas changed", "unit", u.key, "epoch", cur.GetLeaderEpoch(), "from", cur.GetIsr(), "to", isr)
	return e.cluster.Placement.WaitForRevision(ctx, resp.Header.Revision)
}
