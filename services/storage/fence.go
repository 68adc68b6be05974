package storage

import (
	"context"
	"time"

	"github.com/opendms/dms/services/errs"
	"github.com/opendms/dms/services/placement"
	"github.com/opendms/dms/services/storage/logid"
)

// ownerEpochWait bounds the wait for this node to hear of an owner epoch a
// request carries before the placement watch delivered it.
const ownerEpochWait = 2 * time.Second

// checkInsync refuses a write while fewer replicas than the unit's minimum
// are in sync: it could not be made as durable as the queue promises.
func (u *unit) checkInsync(id logid.ID) error {
	u.mu.Lock()
	isr, minimum := u.st.GetIsr(), max(u.st.GetMinInsync(), 1)
	u.mu.Unlock()
	if int32(len(isr)) < minimum {
		return errs.Wrapf(errs.ErrNotEnoughReplicas, "storage: %s has %d in-sync replicas (%v), fewer than the %d a write needs; nothing was stored",
			logid.Describe(id), len(isr), isr, minimum)
	}
	return nil
}

// ownerEpoch returns the current owner epoch of a unit, waiting a little
// when the caller knows of a newer one than this node.
func (e *Engine) ownerEpoch(ctx context.Context, u *unit, atLeast int64) (int64, error) {
	deadline := time.NewTimer(ownerEpochWait)
	defer deadline.Stop()
	for {
		changed := e.cluster.Placement.Changed()
		st, _ := e.cluster.Placement.Unit(u.id)
		if st.GetOwnerEpoch() >= atLeast {
			return st.GetOwnerEpoch(), nil
		}
		select {
		case <-changed:
		case <-deadline.C:
			return 0, errs.Wrapf(errs.ErrNotLeader, "storage: %s has not heard of owner epoch %d yet (knows %d)", placement.UnitKey(u.id), atLeast, st.GetOwnerEpoch())
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// admitWriter admits a write of the owner of epoch w to an internal log of
// u, or refuses it because a newer owner took over. The caller holds the
// returned release until its write is durable. An epoch of 0 is a writer
// that does not take part in fencing (a standalone engine's).
func (e *Engine) admitWriter(ctx context.Context, u *unit, w int64) (release func(), err error) {
	if w == 0 {
		return func() {}, nil
	}
	current, err := e.ownerEpoch(ctx, u, w)
	if err != nil {
		return nil, err
	}
	u.fence.RLock()
	u.mu.Lock()
	fenced := u.fencedEpoch
	u.mu.Unlock()
	if w < current || w < fenced {
		u.fence.RUnlock()
		return nil, errs.Wrapf(errs.ErrFenced, "storage: %s is owned in epoch %d; a write of owner epoch %d is refused", placement.UnitKey(u.id), max(current, fenced), w)
	}
	return u.fence.RUnlock, nil
}

// checkWriter refuses a change of an internal log (trim, delete) from an
// owner that was replaced.
func (e *Engine) checkWriter(ctx context.Context, id logid.ID, w int64) error {
	u, err := e.leaderFor(id, 0)
	if err != nil || u == nil {
		return err
	}
	release, err := e.admitWriter(ctx, u, w)
	if err != nil {
		return err
	}
	release()
	return nil
}

// fenceRead prepares the read of an internal log by its owner of epoch w,
// which took over: from now on writes of older owners are refused, those
// already admitted are waited for, and what earlier leader epochs left
// must be committed, so that the read sees everything an older owner was
// told was stored.
func (e *Engine) fenceRead(ctx context.Context, u *unit, l *openLog, w int64) error {
	current, err := e.ownerEpoch(ctx, u, w)
	if err != nil {
		return err
	}
	if w < current {
		return errs.Wrapf(errs.ErrFenced, "storage: %s is owned in epoch %d, not %d", placement.UnitKey(u.id), current, w)
	}
	u.fence.Lock()
	u.mu.Lock()
	u.fencedEpoch = max(u.fencedEpoch, w)
	u.mu.Unlock()
	u.fence.Unlock()
	key := logid.Key(l.id)
	for {
		u.mu.Lock()
		hw, start, leading, changed := u.hwLocked(key, l.NextOffset()), u.epochStart[key], u.leading, u.hwChanged
		u.mu.Unlock()
		if !leading {
			return errs.Wrapf(errs.ErrNotLeader, "storage: leadership of %s moved", placement.UnitKey(u.id))
		}
		if hw >= start {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return errs.Wrapf(errs.ErrUnavailable, "storage: %s: what earlier leaders left is not replicated yet: %v", logid.Describe(l.id), ctx.Err())
		}
	}
}
