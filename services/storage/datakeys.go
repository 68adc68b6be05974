package storage

import (
	"context"
	"errors"
	"fmt"

	"github.com/opendms/dms/services/datakeys"
	"github.com/opendms/dms/services/storage/logid"
	"github.com/opendms/dms/services/storage/partitionlog"
)

// Which key seals a log. Every log that belongs to a queue (its partitions,
// and the delivery state, dead letters, broadcast state and timer buckets
// of its groups) is sealed with the data key of the queue's project: dead
// letters and timer buckets hold message bodies, delivery state holds
// message ids and consumer names, and all of them go when the project
// goes, so crypto-shredding a project must reach them all. The logs that
// belong to no project (the audit trail, the Kafka group coordinators'
// logs) are sealed with the master key, the system key: the audit trail
// must outlive any tenant (its hash chain is verified across all of them),
// and it holds no message bodies.

func (e *Engine) dataKeys() *datakeys.Manager {
	if !e.dk.Enabled() || e.keys == nil {
		return nil
	}
	return e.dk
}

// keyringFor returns the keyring a log is opened with and the project
// whose key it holds ("" for the master keys alone). A project's first use
// makes its data key.
func (e *Engine) keyringFor(ctx context.Context, id logid.ID) (string, *partitionlog.Keyring, error) {
	dk := e.dataKeys()
	if dk == nil || id.GetQueueId() == "" {
		return "", e.keys, nil
	}
	q, err := e.cache.QueueByID(ctx, id.GetQueueId())
	if err != nil {
		return "", nil, err
	}
	project := q.GetProject()
	e.mu.Lock()
	ring := e.rings[project]
	e.mu.Unlock()
	if ring != nil {
		return project, ring, nil
	}
	ring, err = e.buildRing(ctx, project)
	if err != nil {
		return "", nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if r := e.rings[project]; r != nil {
		return project, r, nil
	}
	e.rings[project] = ring
	return project, ring, nil
}

// buildRing makes the project's keyring: the master keys (which open
// batches sealed before the project had a data key) and its data keys, the
// newest active.
func (e *Engine) buildRing(ctx context.Context, project string) (*partitionlog.Keyring, error) {
	keys, err := e.dk.Keys(ctx, project, true)
	if err != nil {
		return nil, fmt.Errorf("storage: the data keys of project %s: %w", project, err)
	}
	return e.keys.With(keys...)
}

// refreshedKeys reports whether err is a batch sealed with a key missing
// from the project's ring, and if so rereads the project's keys from etcd
// (handing them to its open logs), for the caller to try once more: a
// rotation made through another node may not have reached this one yet
// when it opens a batch the other sealed (a follower that just became
// leader).
func (e *Engine) refreshedKeys(ctx context.Context, project string, err error) bool {
	if project == "" || e.dataKeys() == nil || !errors.Is(err, partitionlog.ErrEncryptionKey) {
		return false
	}
	if rerr := e.dk.Refresh(ctx, project); rerr != nil {
		e.logger.Warn("storage: rereading a project's data keys", "project", project, "err", rerr)
		return false
	}
	return true
}

// onDataKeysChanged hands a project's new keyring (after a rotation, made
// through any node) to its open logs.
func (e *Engine) onDataKeysChanged(project string) {
	ctx := context.Background()
	keys, err := e.dk.Keys(ctx, project, false)
	if err != nil {
		e.logger.Error("storage: reading a project's new data keys", "project", project, "err", err)
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(keys) == 0 {
		// Destroyed: no queue is left in the project, its logs are being
		// deleted. A queue made later makes a new key on first use.
		delete(e.rings, project)
		return
	}
	ring, err := e.keys.With(keys...)
	if err != nil {
		e.logger.Error("storage: a project's new data keys", "project", project, "err", err)
		return
	}
	e.rings[project] = ring
	for _, l := range e.logs {
		if l.project == project {
			_ = l.SetKeys(ring)
		}
	}
	active := keys[len(keys)-1].ID
	e.logger.Info("storage: a project's data key changed", "project", project, "activeKeyID", active)
}
