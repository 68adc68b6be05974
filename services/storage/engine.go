package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"google.golang.org/protobuf/proto"

	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	"github.com/opendms/dms/services/catalog"
	"github.com/opendms/dms/services/errs"
	"github.com/opendms/dms/services/storage/logid"
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
	logs   map[string]*openLog    // by logid.Key
	dedups map[string]*dedupIndex // by logid.Key, for idempotent appends
}

// openLog is an open log with the durability it was created with.
type openLog struct {
	*partitionlog.Log
	id         logid.ID
	durability storagev1.Durability
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
	e := &Engine{cfg: cfg, cache: cache, now: now, logger: logger, keys: keys, logs: map[string]*openLog{}, dedups: map[string]*dedupIndex{}}
	cache.Subscribe(e.onCatalogEvent)
	return e, nil
}

// Close closes every open log, flushing what is buffered.
func (e *Engine) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	var firstErr error
	for key, l := range e.logs {
		if err := l.Close(); err != nil && firstErr == nil {
			firstErr = fmt.Errorf("storage: closing %s: %w", logid.Describe(l.id), err)
		}
		delete(e.logs, key)
	}
	return firstErr
}

// open returns the open log, opening it if needed. With create unset a log
// that has no directory yet is not created and open returns nil. A created
// log keeps durability. Queue partitions must exist in the catalog, and a
// group's logs must belong to a group the catalog has, so that a late write
// never resurrects the data of a deleted queue or group.
func (e *Engine) open(ctx context.Context, id logid.ID, create bool, durability storagev1.Durability) (*openLog, error) {
	key := logid.Key(id)
	e.mu.Lock()
	l := e.logs[key]
	e.mu.Unlock()
	if l != nil {
		return l, nil
	}
	if err := logid.Validate(id); err != nil {
		return nil, err
	}
	if err := e.checkOwnerExists(ctx, id); err != nil {
		return nil, err
	}
	dir := filepath.Join(e.cfg.Dir, filepath.FromSlash(logid.Dir(id)))
	stored, found, err := readDurability(dir)
	if err != nil {
		return nil, err
	}
	switch {
	case found:
		durability = stored
	case !create:
		if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		// A log written before logs recorded their durability.
		durability = storagev1.Durability_DURABILITY_SYNC
	}
	durability = normalDurability(durability)
	e.mu.Lock()
	defer e.mu.Unlock()
	if l := e.logs[key]; l != nil {
		return l, nil
	}
	opts := partitionlog.Options{
		Dir:           dir,
		SegmentBytes:  e.cfg.InternalSegmentBytes,
		Durability:    partitionlog.DurabilitySync,
		FlushInterval: e.cfg.AsyncFlush,
		Now:           e.now,
		Logger:        e.logger.With("log", key),
		Keys:          e.keys,
	}
	if !logid.IsInternal(id) {
		opts.SegmentBytes = e.cfg.SegmentBytes
	}
	if durability == storagev1.Durability_DURABILITY_ASYNC {
		opts.Durability = partitionlog.DurabilityAsync
	}
	pl, err := partitionlog.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("storage: opening %s: %w", logid.Describe(id), err)
	}
	if !found {
		if err := writeDurability(dir, durability); err != nil {
			_ = pl.Close()
			return nil, err
		}
	}
	l = &openLog{Log: pl, id: id, durability: durability}
	e.logs[key] = l
	return l, nil
}

// checkOwnerExists fails unless the catalog has the queue (and partition)
// or group a log belongs to. An etcd error is UNAVAILABLE, never "not found".
func (e *Engine) checkOwnerExists(ctx context.Context, id logid.ID) error {
	q, err := e.cache.QueueByID(ctx, id.GetQueueId())
	if err != nil {
		return err
	}
	switch {
	case id.GetKind() == storagev1.LogKind_LOG_KIND_QUEUE_PARTITION && id.GetPartition() >= q.GetPartitionCount():
		return errs.Wrapf(errs.ErrResourceNameInvalid, "storage: queue %s has no partition %d", q.GetId(), id.GetPartition())
	case logid.HasGroup(id):
		_, err := e.cache.ResolveGroup(ctx, q, id.GetGroupId())
		return err
	}
	return nil
}

func normalDurability(d storagev1.Durability) storagev1.Durability {
	if d == storagev1.Durability_DURABILITY_ASYNC {
		return d
	}
	return storagev1.Durability_DURABILITY_SYNC
}

// Append stores the records (or the pre-encoded batch) of req.
func (e *Engine) Append(ctx context.Context, req *storagev1.AppendRequest) (*storagev1.AppendResponse, error) {
	id := req.GetLog()
	if len(req.GetRecords()) > 0 && req.GetBatch() != nil {
		return nil, errs.Wrapf(errs.ErrRequestInvalid, "storage: an append carries records or a batch, not both")
	}
	if req.GetBatch() != nil {
		return nil, errs.Wrapf(errs.ErrNotImplemented, "storage: appending pre-encoded batches is not supported yet")
	}
	l, err := e.open(ctx, id, true, req.GetDurability())
	if err != nil {
		return nil, err
	}
	if normalDurability(req.GetDurability()) == storagev1.Durability_DURABILITY_SYNC && l.durability == storagev1.Durability_DURABILITY_ASYNC {
		return nil, errs.Wrapf(errs.ErrRequestInvalid, "storage: %s is flushed asynchronously; it cannot take a synchronous append", logid.Describe(id))
	}
	records := req.GetRecords()
	if key := req.GetIdempotenceKey(); key != "" && len(records) > 0 {
		return e.appendIdempotent(ctx, l, key, records)
	}
	first, err := e.appendRecords(ctx, l, records)
	if err != nil {
		return nil, err
	}
	return &storagev1.AppendResponse{FirstOffset: first}, nil
}

// appendRecords encodes records and appends them to an open log.
func (e *Engine) appendRecords(ctx context.Context, l *openLog, records []*storagev1.Record) (int64, error) {
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
		return 0, appendError(l.id, err)
	}
	return first, nil
}

func appendError(id logid.ID, err error) error {
	switch {
	case errors.Is(err, syscall.ENOSPC):
		return errs.Wrapf(errs.ErrStorageFull, "storage: no space left on the device of %s; nothing was stored", logid.Describe(id))
	case errors.Is(err, partitionlog.ErrBatchTooLarge):
		return errs.Wrapf(errs.ErrBatchTooLarge, "storage: %v", err)
	case errors.Is(err, partitionlog.ErrClosed):
		return errs.Wrapf(errs.ErrUnavailable, "storage: %s is closed (queue deleted or server stopping)", logid.Describe(id))
	}
	return fmt.Errorf("storage: appending to %s: %w", logid.Describe(id), err)
}

// ReadResult is what Read returns.
type ReadResult struct {
	Records     []*storagev1.StoredRecord
	StartOffset int64
	NextOffset  int64
}

// Read returns records from offset on (from the start of the log when offset
// was already deleted by retention), waiting up to maxWait for one.
func (e *Engine) Read(ctx context.Context, id logid.ID, offset int64, maxBytes int, maxWait time.Duration) (ReadResult, error) {
	// A reader that waits needs the log to exist to be woken by its first
	// append; one that does not wait must not create logs for nothing.
	l, err := e.open(ctx, id, maxWait > 0, storagev1.Durability_DURABILITY_UNSPECIFIED)
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
		return ReadResult{}, fmt.Errorf("storage: %s: reading from offset %d: %w", logid.Describe(id), offset, err)
	}
	out := ReadResult{StartOffset: l.StartOffset(), NextOffset: l.NextOffset(), Records: make([]*storagev1.StoredRecord, len(entries))}
	for i, en := range entries {
		rec := &storagev1.Record{}
		if err := proto.Unmarshal(en.Data, rec); err != nil {
			return ReadResult{}, fmt.Errorf("storage: %s offset %d: undecodable record: %w", logid.Describe(id), en.Offset, err)
		}
		out.Records[i] = &storagev1.StoredRecord{Offset: en.Offset, Record: rec}
	}
	return out, nil
}

// Info describes a log; a log never written to has empty ranges.
func (e *Engine) Info(ctx context.Context, id logid.ID) (*storagev1.LogInfo, error) {
	l, err := e.open(ctx, id, false, storagev1.Durability_DURABILITY_UNSPECIFIED)
	if err != nil {
		return nil, err
	}
	info := &storagev1.LogInfo{Log: id}
	if l != nil {
		info.StartOffset, info.NextOffset, info.SizeBytes = l.StartOffset(), l.NextOffset(), l.Size()
	}
	return info, nil
}

// TrimLog deletes the segments of an internal log below offset and returns
// the log's new start.
func (e *Engine) TrimLog(ctx context.Context, id logid.ID, before int64) (int64, error) {
	if !logid.IsInternal(id) {
		return 0, errs.Wrapf(errs.ErrResourceNameInvalid, "storage: %s is not an internal log; queue partitions shrink by retention only", logid.Describe(id))
	}
	l, err := e.open(ctx, id, false, storagev1.Durability_DURABILITY_UNSPECIFIED)
	if err != nil || l == nil {
		return 0, err
	}
	if _, err := l.TrimBefore(before); err != nil {
		return 0, fmt.Errorf("storage: trimming %s: %w", logid.Describe(id), err)
	}
	return l.StartOffset(), nil
}

// FindOffset returns the first offset of a log stored at or after ts.
func (e *Engine) FindOffset(ctx context.Context, id logid.ID, ts int64) (int64, error) {
	l, err := e.open(ctx, id, false, storagev1.Durability_DURABILITY_UNSPECIFIED)
	if err != nil || l == nil {
		return 0, err
	}
	offset, err := l.OffsetForTime(ts)
	if err != nil {
		return 0, fmt.Errorf("storage: finding time %d in %s: %w", ts, logid.Describe(id), err)
	}
	return offset, nil
}
