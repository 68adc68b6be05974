package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"google.golang.org/protobuf/proto"

	metadatav1 "github.com/opendms/dms/gen/go/dms/metadata/v1"
	storagev1 "github.com/opendms/dms/gen/go/dms/storage/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/catalog"
	"github.com/opendms/dms/services/errs"
	"github.com/opendms/dms/services/storage/partitionlog"
)

// Engine owns the open logs of this storage node.
type Engine struct {
	cfg    Config
	cache  *catalog.Cache
	now    func() time.Time
	logger *slog.Logger
	keys   *partitionlog.Keyring // nil: encryption at rest is off

	mu     sync.Mutex
	logs   map[string]*partitionlog.Log
	dedups map[string]*dedupIndex // by log name, for idempotent appends
}

// NewEngine returns an engine keeping its logs under cfg.Dir. It deletes the
// data of queues and groups as the catalog drops them. It fails if the
// encryption keys are malformed, or missing or different from the keys the
// stored data was encrypted with (see keys.go).
func NewEngine(cfg Config, cache *catalog.Cache, now func() time.Time, logger *slog.Logger) (*Engine, error) {
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	keys, err := loadKeyring(cfg, os.LookupEnv, logger)
	if err != nil {
		return nil, err
	}
	if err := checkKeyFingerprints(cfg.Dir, keys); err != nil {
		return nil, err
	}
	if keys != nil {
		active, _ := keys.Active()
		logger.Info("storage: encryption at rest is on", "activeKeyID", active, "keyIDs", keys.IDs())
	}
	e := &Engine{cfg: cfg, cache: cache, now: now, logger: logger, keys: keys, logs: map[string]*partitionlog.Log{}, dedups: map[string]*dedupIndex{}}
	cache.Subscribe(e.onCatalogEvent)
	return e, nil
}

// Start removes data of queues deleted while this node was down and runs the
// retention loop until ctx ends. The catalog cache must be started first.
func (e *Engine) Start(ctx context.Context) {
	e.removeOrphans()
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

// Close closes every open log, flushing what is buffered.
func (e *Engine) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	var firstErr error
	for name, l := range e.logs {
		if err := l.Close(); err != nil && firstErr == nil {
			firstErr = fmt.Errorf("storage: closing %s: %w", name, err)
		}
		delete(e.logs, name)
	}
	return firstErr
}

// open returns the open log, opening it (and creating it when create is set)
// if needed. Queue partitions must exist in the catalog.
func (e *Engine) open(ctx context.Context, name string, create bool) (*partitionlog.Log, error) {
	e.mu.Lock()
	l := e.logs[name]
	e.mu.Unlock()
	if l != nil {
		return l, nil
	}
	kind, queueID, rest, ok := catalog.ParseLog(name)
	if !ok {
		return nil, errs.Wrapf(errs.ErrResourceNameInvalid, "storage: %q is not a log name", name)
	}
	q, err := e.cache.QueueByID(ctx, queueID)
	if err != nil {
		return nil, err
	}
	durability := partitionlog.DurabilitySync
	segmentBytes := e.cfg.InternalSegmentBytes
	if kind == "q" {
		segmentBytes = e.cfg.SegmentBytes
		p, err := strconv.Atoi(rest)
		if err != nil || p < 0 || p >= int(q.GetPartitionCount()) {
			return nil, errs.Wrapf(errs.ErrResourceNameInvalid, "storage: queue %s has no partition %q", queueID, rest)
		}
		if q.GetMode() == dmsv1.QueueMode_QUEUE_MODE_KAFKA_HT {
			durability = partitionlog.DurabilityAsync
		}
	} else if kind == "t" {
		if hour, err := strconv.ParseInt(rest, 10, 64); err != nil || hour < 0 {
			return nil, errs.Wrapf(errs.ErrResourceNameInvalid, "storage: %q is not a timer bucket (t/{queue_id}/{hour})", name)
		}
	} else if _, err := e.cache.ResolveGroup(ctx, q, catalog.LogGroup(kind, rest)); err != nil {
		// A late state write must not resurrect the log of a deleted group.
		return nil, err
	}
	dir := filepath.Join(e.cfg.Dir, filepath.FromSlash(name))
	if !create {
		if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if l := e.logs[name]; l != nil {
		return l, nil
	}
	l, err = partitionlog.Open(partitionlog.Options{
		Dir:           dir,
		SegmentBytes:  segmentBytes,
		Durability:    durability,
		FlushInterval: e.cfg.AsyncFlush,
		Now:           e.now,
		Logger:        e.logger.With("log", name),
		Keys:          e.keys,
	})
	if err != nil {
		return nil, fmt.Errorf("storage: opening %s: %w", describeLog(name), err)
	}
	e.logs[name] = l
	return l, nil
}

// Append encodes records and appends them to a log.
func (e *Engine) Append(ctx context.Context, name string, records []*storagev1.Record, idempotenceKey string) (*storagev1.AppendResponse, error) {
	l, err := e.open(ctx, name, true)
	if err != nil {
		return nil, err
	}
	if idempotenceKey != "" && len(records) > 0 {
		return e.appendIdempotent(ctx, name, l, idempotenceKey, records)
	}
	first, err := e.appendRecords(ctx, name, l, records)
	if err != nil {
		return nil, err
	}
	return &storagev1.AppendResponse{FirstOffset: first}, nil
}

// appendRecords encodes records and appends them to an open log.
func (e *Engine) appendRecords(ctx context.Context, name string, l *partitionlog.Log, records []*storagev1.Record) (int64, error) {
	recs := make([]partitionlog.Record, len(records))
	for i, r := range records {
		data, err := proto.Marshal(r)
		if err != nil {
			return 0, fmt.Errorf("storage: encoding record: %w", err)
		}
		recs[i] = partitionlog.Record{Timestamp: r.GetTimestampMs(), Data: data}
	}
	first, err := l.Append(ctx, recs)
	if err != nil {
		return 0, appendError(name, err)
	}
	return first, nil
}

func appendError(name string, err error) error {
	switch {
	case errors.Is(err, syscall.ENOSPC):
		return errs.Wrapf(errs.ErrStorageFull, "storage: no space left on the device of %s; nothing was stored", describeLog(name))
	case errors.Is(err, partitionlog.ErrBatchTooLarge):
		return errs.Wrapf(errs.ErrBatchTooLarge, "storage: %v", err)
	case errors.Is(err, partitionlog.ErrClosed):
		return errs.Wrapf(errs.ErrUnavailable, "storage: log %s is closed (queue deleted or server stopping)", name)
	}
	return fmt.Errorf("storage: appending to %s: %w", describeLog(name), err)
}

// describeLog names a log for errors by its queue and partition (or for an
// internal log its queue and name), so that an operator reading about
// damaged data knows which queue it belongs to.
func describeLog(name string) string {
	kind, queueID, rest, ok := catalog.ParseLog(name)
	switch {
	case !ok:
		return "log " + name
	case kind == "q":
		return fmt.Sprintf("queue %s partition %s", queueID, rest)
	default:
		return fmt.Sprintf("queue %s log %s", queueID, name)
	}
}

// ReadResult is what Read returns.
type ReadResult struct {
	Records     []*storagev1.StoredRecord
	StartOffset int64
	NextOffset  int64
}

// Read returns records from offset on (from the start of the log when offset
// was already deleted by retention), waiting up to maxWait for one.
func (e *Engine) Read(ctx context.Context, name string, offset int64, maxBytes int, maxWait time.Duration) (ReadResult, error) {
	// A reader that waits needs the log to exist to be woken by its first
	// append; one that does not wait must not create logs for nothing.
	l, err := e.open(ctx, name, maxWait > 0)
	if err != nil || l == nil {
		return ReadResult{}, err
	}
	if maxWait > 0 && offset >= l.NextOffset() {
		wctx, cancel := context.WithTimeout(ctx, maxWait)
		werr := l.WaitFor(wctx, offset)
		cancel()
		if werr != nil && ctx.Err() != nil {
			return ReadResult{}, ctx.Err()
		}
	}
	offset = max(offset, l.StartOffset())
	entries, err := l.Read(offset, maxBytes)
	if errors.Is(err, partitionlog.ErrOffsetOutOfRange) {
		// Retention removed the segment between StartOffset and Read.
		entries, err = l.Read(l.StartOffset(), maxBytes)
	}
	if err != nil {
		// A corrupt batch names its segment file, position and the offsets
		// it makes unreadable.
		return ReadResult{}, fmt.Errorf("storage: %s: reading from offset %d: %w", describeLog(name), offset, err)
	}
	out := ReadResult{StartOffset: l.StartOffset(), NextOffset: l.NextOffset(), Records: make([]*storagev1.StoredRecord, len(entries))}
	for i, en := range entries {
		rec := &storagev1.Record{}
		if err := proto.Unmarshal(en.Data, rec); err != nil {
			return ReadResult{}, fmt.Errorf("storage: log %s offset %d: undecodable record: %w", name, en.Offset, err)
		}
		out.Records[i] = &storagev1.StoredRecord{Offset: en.Offset, Record: rec}
	}
	return out, nil
}

// Info describes a log; a log never written to has empty ranges.
func (e *Engine) Info(ctx context.Context, name string) (*storagev1.LogInfo, error) {
	l, err := e.open(ctx, name, false)
	if err != nil {
		return nil, err
	}
	info := &storagev1.LogInfo{Log: name}
	if l != nil {
		info.StartOffset, info.NextOffset, info.SizeBytes = l.StartOffset(), l.NextOffset(), l.Size()
	}
	return info, nil
}

// DeleteLog closes and removes one log with its data.
func (e *Engine) DeleteLog(name string) error {
	e.mu.Lock()
	l := e.logs[name]
	delete(e.logs, name)
	delete(e.dedups, name)
	e.mu.Unlock()
	if l != nil {
		if err := l.Remove(); err != nil {
			return fmt.Errorf("storage: removing %s: %w", name, err)
		}
	}
	return os.RemoveAll(filepath.Join(e.cfg.Dir, filepath.FromSlash(name)))
}

// deleteQueueData removes every log of a queue: partitions and internal logs.
func (e *Engine) deleteQueueData(queueID string) {
	e.mu.Lock()
	var names []string
	for name := range e.logs {
		if _, id, _, _ := catalog.ParseLog(name); id == queueID {
			names = append(names, name)
		}
	}
	e.mu.Unlock()
	for _, name := range names {
		if err := e.DeleteLog(name); err != nil {
			e.logger.Error("deleting log of deleted queue", "log", name, "err", err)
		}
	}
	for _, kind := range logKinds {
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

// logKinds are the first segments of every log name (see catalog.ParseLog).
var logKinds = append(append([]string{"q"}, catalog.InternalLogKinds...), catalog.QueueLogKinds...)

// deleteGroupData removes every internal log of a consumer group: delivery
// state, dead letters and their state, and its broadcast consumers' state.
func (e *Engine) deleteGroupData(queueID, groupID string) {
	names := []string{
		catalog.DeliveryStateLog(queueID, groupID),
		catalog.DeadLetterLog(queueID, groupID),
		catalog.DeadLetterStateLog(queueID, groupID),
	}
	entries, _ := os.ReadDir(filepath.Join(e.cfg.Dir, "b", queueID))
	for _, ent := range entries {
		name := "b/" + queueID + "/" + ent.Name()
		if _, _, rest, ok := catalog.ParseLog(name); ok && catalog.LogGroup("b", rest) == groupID {
			names = append(names, name)
		}
	}
	for _, name := range names {
		if err := e.DeleteLog(name); err != nil {
			e.logger.Error("deleting data of deleted group", "log", name, "err", err)
		}
	}
}

// TrimLog deletes the segments of an internal log below offset and returns
// the log's new start.
func (e *Engine) TrimLog(ctx context.Context, name string, before int64) (int64, error) {
	if kind, _, _, ok := catalog.ParseLog(name); !ok || kind == "q" {
		return 0, errs.Wrapf(errs.ErrResourceNameInvalid, "storage: %q is not an internal log; queue partitions shrink by retention only", name)
	}
	l, err := e.open(ctx, name, false)
	if err != nil || l == nil {
		return 0, err
	}
	if _, err := l.TrimBefore(before); err != nil {
		return 0, fmt.Errorf("storage: trimming %s: %w", name, err)
	}
	return l.StartOffset(), nil
}

// FindOffset returns the first offset of a log stored at or after ts.
func (e *Engine) FindOffset(ctx context.Context, name string, ts int64) (int64, error) {
	l, err := e.open(ctx, name, false)
	if err != nil || l == nil {
		return 0, err
	}
	offset, err := l.OffsetForTime(ts)
	if err != nil {
		return 0, fmt.Errorf("storage: finding time %d in %s: %w", ts, name, err)
	}
	return offset, nil
}

// removeOrphans deletes the directories of queues the catalog no longer has.
func (e *Engine) removeOrphans() {
	for _, kind := range logKinds {
		entries, _ := os.ReadDir(filepath.Join(e.cfg.Dir, kind))
		for _, ent := range entries {
			if _, err := e.cache.QueueByID(context.Background(), ent.Name()); err != nil && errors.Is(err, errs.ErrQueueNotFound) {
				e.deleteQueueData(ent.Name())
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
	var names []string
	for p := range q.GetPartitionCount() {
		names = append(names, catalog.PartitionLog(q.GetId(), p))
	}
	// Dead letters are kept as long as the queue keeps messages (72 h).
	for _, g := range e.cache.Groups(q.GetId()) {
		names = append(names, catalog.DeadLetterLog(q.GetId(), g.GetId()))
	}
	for _, name := range names {
		l, err := e.open(context.Background(), name, false)
		if err != nil || l == nil {
			continue
		}
		n, err := l.EnforceRetention(time.Duration(q.GetRetentionMs())*time.Millisecond, 0)
		if err != nil {
			e.logger.Error("retention", "log", name, "err", err)
		} else if n > 0 {
			e.logger.Info("retention deleted segments", "log", name, "segments", n)
		}
	}
}
