package storage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	metadatav1 "github.com/opendms/dms/gen/go/dms/cluster/metadata/v1"
	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	"github.com/opendms/dms/services/catalog"
	"github.com/opendms/dms/services/storage/logid"
)

// Start removes the data of queues and groups deleted while this node was
// down and runs the retention loop until ctx ends. The catalog cache must be
// started first.
func (e *Engine) Start(ctx context.Context) {
	e.removeDeleted(ctx)
	if e.cluster != nil {
		e.indexLogsOnDisk()
		e.fetchers.start(ctx)
		e.applyPlacement()
		go e.placementLoop(ctx)
		go e.isrLoop(ctx)
		go e.repairLoop(ctx)
	}
	if e.cfg.ScrubBytesPerSecond > 0 {
		go e.scrubLoop(ctx)
	}
	go func() {
		t := time.NewTicker(e.cfg.RetentionInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				e.EnforceRetention()
			}
		}
	}()
}

// DeleteLog closes and removes one log with its data.
func (e *Engine) DeleteLog(id logid.ID) error {
	if err := logid.Validate(id); err != nil {
		return err
	}
	key := logid.Key(id)
	e.mu.Lock()
	l := e.logs[key]
	delete(e.logs, key)
	delete(e.dedups, key)
	delete(e.producers, key)
	e.deleted[key] = true
	e.mu.Unlock()
	if e.cluster != nil {
		e.units.removeLog(e.unitOf(id), id)
	}
	e.repairDone(key)
	if l != nil {
		if err := l.Remove(); err != nil {
			return fmt.Errorf("storage: removing %s: %w", logid.Describe(id), err)
		}
	}
	return os.RemoveAll(filepath.Join(e.cfg.Dir, filepath.FromSlash(logid.Dir(id))))
}

// deleteQueueData removes every log of a queue: partitions and internal
// logs. It is called only on positive evidence that the queue was deleted:
// the catalog's watch saw it go, or its tombstone says so.
func (e *Engine) deleteQueueData(queueID string) {
	e.mu.Lock()
	var ids []logid.ID
	for _, l := range e.logs {
		if l.id.GetQueueId() == queueID {
			ids = append(ids, l.id)
		}
	}
	e.mu.Unlock()
	for _, id := range ids {
		if err := e.DeleteLog(id); err != nil {
			e.logger.Error("deleting log of deleted queue", "log", logid.Key(id), "err", err)
		}
	}
	for _, kind := range logid.KindDirs() {
		if err := os.RemoveAll(filepath.Join(e.cfg.Dir, kind, queueID)); err != nil {
			e.logger.Error("deleting data of deleted queue", "queue", queueID, "err", err)
		}
	}
	e.logger.Info("deleted data of queue", "queue", queueID)
}

func (e *Engine) onCatalogEvent(ev catalog.Event) {
	switch ev.Kind {
	case catalog.QueueDeleted:
		// Off the watch goroutine: closing logs waits for in-flight appends.
		go e.deleteQueueData(ev.QueueID)
	case catalog.GroupDeleted:
		go e.deleteGroupData(ev.QueueID, ev.GroupID)
	}
}

// groupLogsOnDisk lists the logs of a group that have a directory here: its
// state, dead letters and their state, and its broadcast consumers' state.
func (e *Engine) groupLogsOnDisk(queueID, groupID string) []logid.ID {
	ids := []logid.ID{logid.GroupState(queueID, groupID), logid.DeadLetters(queueID, groupID), logid.DeadLetterState(queueID, groupID)}
	broadcastDir := logid.Dir(logid.BroadcastState(queueID, groupID, "x"))
	entries, _ := os.ReadDir(filepath.Join(e.cfg.Dir, filepath.FromSlash(filepath.Dir(broadcastDir))))
	for _, ent := range entries {
		if id, ok := logid.FromDir(filepath.ToSlash(filepath.Join(filepath.Dir(broadcastDir), ent.Name()))); ok && id.GetGroupId() == groupID {
			ids = append(ids, id)
		}
	}
	return ids
}

// deleteGroupData removes every internal log of a deleted consumer group.
func (e *Engine) deleteGroupData(queueID, groupID string) {
	for _, id := range e.groupLogsOnDisk(queueID, groupID) {
		if err := e.DeleteLog(id); err != nil {
			e.logger.Error("deleting data of deleted group", "log", logid.Key(id), "err", err)
		}
	}
}

// removeDeleted deletes the data of queues and groups that were deleted
// while this node was down. Absence from the catalog is not enough: a
// transient etcd error, or a node started against another cluster's etcd,
// would look the same. Only a tombstone, which the metadata role writes in
// the transaction that deletes the queue or group, allows the deletion;
// data the catalog neither has nor remembers deleting is kept and reported.
func (e *Engine) removeDeleted(ctx context.Context) {
	for _, kind := range logid.KindDirs() {
		entries, err := os.ReadDir(filepath.Join(e.cfg.Dir, kind))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			e.logger.Error("storage: listing data to look for deleted queues", "dir", kind, "err", err)
			continue
		}
		for _, ent := range entries {
			queueID := ent.Name()
			if !catalog.IsQueueID(queueID) {
				continue
			}
			q, err := e.cache.QueueByID(ctx, queueID)
			switch {
			case err == nil:
				e.removeDeletedGroups(ctx, q, kind)
				continue
			case !catalog.IsNotFound(err):
				e.logger.Warn("storage: could not check whether a queue still exists; its data is kept", "queue", queueID, "err", err)
				continue
			}
			deleted, err := e.cache.QueueTombstone(ctx, queueID)
			switch {
			case err != nil:
				e.logger.Warn("storage: could not check whether a queue was deleted; its data is kept", "queue", queueID, "err", err)
			case deleted:
				e.deleteQueueData(queueID)
			default:
				e.logger.Warn("storage: data of a queue the catalog does not know, and does not remember deleting; kept. "+
					"Is this node attached to the right etcd? Remove the directory by hand if the queue is gone for good.",
					"queue", queueID, "dir", filepath.Join(e.cfg.Dir, kind, queueID))
			}
		}
	}
}

// removeDeletedGroups deletes the logs of a queue's groups that have a
// tombstone, in one kind's directory.
func (e *Engine) removeDeletedGroups(ctx context.Context, q *metadatav1.QueueRecord, kind string) {
	entries, _ := os.ReadDir(filepath.Join(e.cfg.Dir, kind, q.GetId()))
	for _, ent := range entries {
		id, ok := logid.FromDir(kind + "/" + q.GetId() + "/" + ent.Name())
		if !ok || !logid.HasGroup(id) {
			continue
		}
		_, err := e.cache.ResolveGroup(ctx, q, id.GetGroupId())
		if err == nil || !catalog.IsNotFound(err) {
			continue
		}
		if deleted, err := e.cache.GroupTombstone(ctx, q.GetId(), id.GetGroupId()); err == nil && deleted {
			if err := e.DeleteLog(id); err != nil {
				e.logger.Error("deleting data of deleted group", "log", logid.Key(id), "err", err)
			}
		}
	}
}

// EnforceRetention deletes expired segments of every queue partition.
func (e *Engine) EnforceRetention() {
	for _, q := range e.cache.Queues("") {
		e.enforceQueueRetention(q)
	}
}

func (e *Engine) enforceQueueRetention(q *metadatav1.QueueRecord) {
	var ids []logid.ID
	for p := range q.GetPartitionCount() {
		ids = append(ids, logid.Partition(q.GetId(), p))
	}
	// Dead letters are kept as long as the queue keeps messages (72 h).
	for _, g := range e.cache.Groups(q.GetId()) {
		ids = append(ids, logid.DeadLetters(q.GetId(), g.GetId()))
	}
	for _, id := range ids {
		l, err := e.open(context.Background(), id, false, storagev1.Durability_DURABILITY_UNSPECIFIED)
		if err != nil || l == nil {
			continue
		}
		n, err := l.EnforceRetention(time.Duration(q.GetRetentionMs())*time.Millisecond, 0)
		if err != nil {
			e.logger.Error("retention", "log", logid.Key(id), "err", err)
		} else if n > 0 {
			e.logger.Info("retention deleted segments", "log", logid.Key(id), "segments", n)
		}
	}
}

// durabilityFileName records, in a log's directory, the durability the log
// was created with, so that a log opened by a reader after a restart keeps
// flushing the way its writer asked.
const durabilityFileName = "durability"

func readDurability(dir string) (storagev1.Durability, bool, error) {
	data, err := os.ReadFile(filepath.Join(dir, durabilityFileName))
	if errors.Is(err, os.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("storage: reading the durability of %s: %w", dir, err)
	}
	switch strings.TrimSpace(string(data)) {
	case "sync":
		return storagev1.Durability_DURABILITY_SYNC, true, nil
	case "async":
		return storagev1.Durability_DURABILITY_ASYNC, true, nil
	}
	return 0, false, fmt.Errorf("storage: %s: unknown durability %q", filepath.Join(dir, durabilityFileName), data)
}

func writeDurability(dir string, d storagev1.Durability) error {
	text := "sync\n"
	if d == storagev1.Durability_DURABILITY_ASYNC {
		text = "async\n"
	}
	path := filepath.Join(dir, durabilityFileName)
	tmp := path + ".tmp"
	err := writeFileSync(tmp, []byte(text))
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		return fmt.Errorf("storage: recording the durability of %s: %w", dir, err)
	}
	return nil
}
