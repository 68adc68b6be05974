package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/protobuf/proto"

	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	"github.com/opendms/dms/services/catalog"
	"github.com/opendms/dms/services/datakeys"
	"github.com/opendms/dms/services/errs"
	"github.com/opendms/dms/services/placement"
	"github.com/opendms/dms/services/storage/logid"
	"github.com/opendms/dms/services/storage/partitionlog"
)

// Engine owns the open logs of this storage node, leads the units the
// placement gives it and follows the others it replicates.
type Engine struct {
	cfg      Config
	cache    *catalog.Cache
	cluster  *Cluster // nil: standalone, nothing replicated
	now      func() time.Time
	logger   *slog.Logger
	keys     *partitionlog.Keyring // master keys; nil: encryption at rest is off
	dk       *datakeys.Manager     // the projects' data keys (cluster.DataKeys)
	units    *units
	fetchers *fetchers
	repairs  *repairs        // lost ranges of this node's copies, and damage counters
	latency  *latencyMetrics // nil until RegisterMetrics: records nothing
	// stopping is set when the node begins to stop: it leads nothing more
	// (no writes, no changes of in-sync replicas), so that followers the
	// stopping node no longer answers are not dropped from them.
	stopping atomic.Bool
	// stopped is closed with stopping set: writes waiting for their
	// in-sync replicas give up then (waitCommitted), since a stopping
	// leader's followers move to the next leader and never confirm them.
	stopped      chan struct{}
	relinquished sync.Once

	mu        sync.Mutex
	logs      map[string]*openLog    // by logid.Key
	dedups    map[string]*dedupIndex // by logid.Key, for idempotent appends
	producers map[string]*producers  // by logid.Key, for idempotent Kafka producers
	// deleted are the logs deleted here since this process started (by
	// logid.Key), removed again when a log of that name is created: the
	// positive evidence a leader needs before it tells a follower to delete
	// its copy of a log the leader does not have.
	deleted map[string]bool
	// damageReporter is told of damage found and repaired (SetDamageReporter).
	damageReporter atomic.Pointer[func(DamageEvent)]
	// rings are the keyrings of the projects whose logs are open here (by
	// project id): the master keys plus the project's data keys.
	rings map[string]*partitionlog.Keyring
}

// openLog is an open log with the durability it was created with.
type openLog struct {
	*partitionlog.Log
	id         logid.ID
	durability storagev1.Durability
	project    string // the project whose data key seals it; "" for the system key
}

// NewEngine returns an engine keeping its logs under cfg.Dir. It deletes the
// data of queues and groups as the catalog drops them. It fails if the
// encryption keys are malformed, or missing or different from the keys the
// stored data was encrypted with (see keys.go).
func NewEngine(cfg Config, cache *catalog.Cache, cluster *Cluster, now func() time.Time, logger *slog.Logger) (*Engine, error) {
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	keys, err := LoadKeyring(cfg, logger)
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
	if cfg.ReplicaLagTime <= 0 {
		cfg.ReplicaLagTime = 5 * time.Second
	}
	e := &Engine{cfg: cfg, cache: cache, cluster: cluster, now: now, logger: logger, keys: keys, units: newUnits(), repairs: newRepairs(), stopped: make(chan struct{}), latency: &latencyMetrics{},
		logs: map[string]*openLog{}, rings: map[string]*partitionlog.Keyring{}, dedups: map[string]*dedupIndex{}, producers: map[string]*producers{}, deleted: map[string]bool{}}
	if cluster != nil {
		e.dk = cluster.DataKeys
	}
	e.fetchers = newFetchers(e)
	cache.Subscribe(e.onCatalogEvent)
	if dk := e.dataKeys(); dk != nil {
		dk.Subscribe(e.onDataKeysChanged)
	}
	return e, nil
}

// Relinquish makes a stopping node lead nothing more; the controller moves
// its units to in-sync replicas once the node withdraws its registration.
func (e *Engine) Relinquish() {
	e.relinquished.Do(func() {
		e.stopping.Store(true)
		close(e.stopped)
	})
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
	l, err := e.openOnce(ctx, id, create, durability)
	if err != nil && errors.Is(err, partitionlog.ErrEncryptionKey) && id.GetQueueId() != "" {
		// Sealed with a key of the project this node has not heard of yet:
		// reread the keys (which replaces the project's ring) and retry.
		if q, qerr := e.cache.QueueByID(ctx, id.GetQueueId()); qerr == nil && e.refreshedKeys(ctx, q.GetProject(), err) {
			l, err = e.openOnce(ctx, id, create, durability)
		}
	}
	return l, err
}

func (e *Engine) openOnce(ctx context.Context, id logid.ID, create bool, durability storagev1.Durability) (*openLog, error) {
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
	project, ring, err := e.keyringFor(ctx, id)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if l := e.logs[key]; l != nil {
		return l, nil
	}
	if r := e.rings[project]; project != "" && r != nil {
		ring = r // a rotation seen meanwhile
	}
	opts := partitionlog.Options{
		Dir:           dir,
		SegmentBytes:  e.cfg.InternalSegmentBytes,
		Durability:    partitionlog.DurabilitySync,
		FlushInterval: e.cfg.AsyncFlush,
		Now:           e.now,
		Logger:        e.logger.With("log", key),
		Keys:          ring,
		OnPublish:     func(int64) { e.units.published() },
		OnDamage:      func(r partitionlog.Repair) { e.damageFound(id, r) },
		OnLost:        func(from, to int64) { e.noteLost(id, from, to) },
		OnSync:        e.latency.syncObserver(id),
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
	l = &openLog{Log: pl, id: id, durability: durability, project: project}
	e.logs[key] = l
	delete(e.deleted, key)
	if e.cluster != nil {
		e.units.addLog(e.unitOf(id), id)
	}
	return l, nil
}

// checkOwnerExists fails unless the catalog has the queue (and partition)
// or group a log belongs to. An etcd error is UNAVAILABLE, never "not found".
func (e *Engine) checkOwnerExists(ctx context.Context, id logid.ID) error {
	if id.GetKind() == storagev1.LogKind_LOG_KIND_KAFKA_GROUPS || id.GetKind() == storagev1.LogKind_LOG_KIND_AUDIT {
		return nil // belongs to no queue
	}
	q, err := e.cache.QueueByID(ctx, id.GetQueueId())
	if err != nil {
		return err
	}
	switch {
	case id.GetKind() == storagev1.LogKind_LOG_KIND_QUEUE_PARTITION && id.GetPartition() >= q.GetPartitionCount() && !e.placed(id):
		return errs.Wrapf(errs.ErrResourceNameInvalid, "storage: queue %s has no partition %d", q.GetId(), id.GetPartition())
	case logid.HasGroup(id):
		_, err := e.cache.ResolveGroup(ctx, q, id.GetGroupId())
		return err
	}
	return nil
}

// placed reports whether a log's unit has a placement that names this node:
// a partition just added exists before this node's catalog shows it.
func (e *Engine) placed(id logid.ID) bool {
	if e.cluster == nil {
		return false
	}
	st, ok := e.cluster.Placement.Unit(placement.UnitOfLog(id, 0, 0))
	return ok && slices.Contains(st.GetReplicas(), e.cluster.Node)
}

func normalDurability(d storagev1.Durability) storagev1.Durability {
	if d == storagev1.Durability_DURABILITY_ASYNC {
		return d
	}
	return storagev1.Durability_DURABILITY_SYNC
}

// Append stores the records (or the pre-encoded batch) of req, on the
// leader of the log's unit, and answers once the in-sync replicas have it
// (once this node has it, for an asynchronous log).
func (e *Engine) Append(ctx context.Context, req *storagev1.AppendRequest) (*storagev1.AppendResponse, error) {
	start := time.Now()
	id := req.GetLog()
	if err := logid.Validate(id); err != nil {
		return nil, err
	}
	if (len(req.GetRecords()) > 0) == (req.GetBatch() != nil) {
		return nil, errs.Wrapf(errs.ErrRequestInvalid, "storage: an append carries records or a batch, one of them")
	}
	u, err := e.leaderFor(id, req.GetLeaderEpoch())
	if err != nil {
		return nil, err
	}
	if u != nil {
		if err := u.checkInsync(id); err != nil {
			return nil, err
		}
		if logid.IsInternal(id) {
			unlock, err := e.admitWriter(ctx, u, req.GetWriterEpoch())
			if err != nil {
				return nil, err
			}
			// Held until the write is durable: a new owner's fencing read
			// waits for it.
			defer unlock()
		}
	}
	l, err := e.open(ctx, id, true, req.GetDurability())
	if err != nil {
		return nil, err
	}
	if u != nil {
		// Before the write: what it adds belongs to this epoch.
		if err := e.stampEpoch(u, l); err != nil {
			return nil, errs.Wrapf(errs.ErrUnavailable, "storage: recording leader epoch of %s: %v", logid.Describe(id), err)
		}
	}
	sync := normalDurability(req.GetDurability()) == storagev1.Durability_DURABILITY_SYNC
	if sync && l.durability == storagev1.Durability_DURABILITY_ASYNC {
		return nil, errs.Wrapf(errs.ErrRequestInvalid, "storage: %s is flushed asynchronously; it cannot take a synchronous append", logid.Describe(id))
	}
	var resp *storagev1.AppendResponse
	switch {
	case req.GetBatch().GetFormat() == storagev1.BatchFormat_BATCH_FORMAT_KAFKA:
		resp, err = e.appendKafkaBatch(ctx, l, req.GetBatch())
	case req.GetBatch() != nil:
		resp, err = e.appendBatch(ctx, l, req.GetBatch())
	case req.GetIdempotenceKey() != "":
		resp, err = e.appendIdempotent(ctx, l, req.GetIdempotenceKey(), req.GetRecords())
	default:
		var first int64
		first, err = e.appendRecords(ctx, l, req.GetRecords())
		resp = &storagev1.AppendResponse{FirstOffset: first}
	}
	if err != nil {
		return nil, err
	}
	e.latency.stored(id, start, req, resp)
	if u != nil && sync {
		count := int64(len(req.GetRecords()))
		if b := req.GetBatch(); b != nil {
			count = int64(b.GetRecordCount())
		}
		if resp.GetDuplicate() {
			count = int64(len(resp.GetMessageIds()))
		}
		wctx, cancel := context.WithTimeout(ctx, replicationTimeout)
		defer cancel()
		waitStart := time.Now()
		if err := e.waitCommitted(wctx, u, l, resp.GetFirstOffset()+max(count, 1)-1); err != nil {
			return nil, err
		}
		e.latency.replicated(id, waitStart)
	}
	e.latency.appended(id, start)
	return resp, nil
}

// replicationTimeout bounds the wait for the in-sync replicas; past it the
// append fails (it may still be kept: a retry with the same idempotence key
// finds it).
const replicationTimeout = 15 * time.Second

// appendBatch stores a pre-encoded batch as it is.
func (e *Engine) appendBatch(ctx context.Context, l *openLog, b *storagev1.RecordBatch) (*storagev1.AppendResponse, error) {
	format, err := logFormat(b.GetFormat())
	if err != nil {
		return nil, err
	}
	first, err := l.AppendBatch(ctx, partitionlog.Batch{
		Format: format, Count: int(b.GetRecordCount()), FirstTimestamp: b.GetFirstTimestampMs(), MaxTimestamp: b.GetMaxTimestampMs(), Payload: b.GetData(),
	})
	if errors.Is(err, partitionlog.ErrInvalidBatch) {
		return nil, errs.Wrapf(errs.ErrRequestInvalid, "storage: %v", err)
	}
	if err != nil {
		return nil, appendError(l.id, err)
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
	Batches     []*storagev1.RecordBatch
	StartOffset int64
	NextOffset  int64
	// Lost, when set, is a range of offsets after the records (or at the
	// offset asked for) whose data was damaged on disk: never readable.
	Lost *storagev1.LostRange
}

// ReadOptions are the parameters of a read.
type ReadOptions struct {
	MaxBytes    int
	MaxWait     time.Duration
	RawBatches  bool
	LeaderEpoch int64
	WriterEpoch int64
}

// Read returns records (or whole batches) from offset on, from the start of
// the log when offset was already deleted by retention, waiting up to
// MaxWait for one. Only the leader of the log's unit serves reads, and only
// below the high watermark: a reader never sees what the in-sync replicas
// do not all have.
func (e *Engine) Read(ctx context.Context, id logid.ID, offset int64, opts ReadOptions) (ReadResult, error) {
	if err := logid.Validate(id); err != nil {
		return ReadResult{}, err
	}
	u, err := e.leaderFor(id, opts.LeaderEpoch)
	if err != nil {
		return ReadResult{}, err
	}
	// A reader that waits needs the log to exist to be woken by its first
	// append; one that does not wait must not create logs for nothing.
	l, err := e.open(ctx, id, opts.MaxWait > 0, storagev1.Durability_DURABILITY_UNSPECIFIED)
	if err != nil || l == nil {
		return ReadResult{}, err
	}
	if u != nil && opts.WriterEpoch != 0 {
		if err := e.fenceRead(ctx, u, l, opts.WriterEpoch); err != nil {
			return ReadResult{}, err
		}
	}
	visible := func() int64 {
		if u == nil {
			return l.NextOffset()
		}
		return u.hw(logid.Key(id), l.NextOffset())
	}
	if opts.MaxWait > 0 && offset >= visible() {
		wctx, cancel := context.WithTimeout(ctx, opts.MaxWait)
		werr := e.waitVisible(wctx, u, l, offset)
		cancel()
		if werr != nil && ctx.Err() != nil {
			return ReadResult{}, ctx.Err()
		}
	}
	hw := visible()
	offset = max(offset, l.StartOffset())
	out := ReadResult{StartOffset: l.StartOffset(), NextOffset: hw}
	if offset >= hw {
		return out, nil
	}
	if opts.RawBatches {
		batches, err := l.ReadBatches(offset, opts.MaxBytes)
		if e.refreshedKeys(ctx, l.project, err) {
			batches, err = l.ReadBatches(offset, opts.MaxBytes)
		}
		if errors.Is(err, partitionlog.ErrOffsetOutOfRange) {
			batches, err = l.ReadBatches(l.StartOffset(), opts.MaxBytes)
		}
		if lost, ok := e.lostRange(id, err, hw); ok {
			if err := e.leaderLost(u, id, err); err != nil {
				return ReadResult{}, err
			}
			out.Lost = lost
			return out, nil
		}
		if err != nil {
			return ReadResult{}, e.readError(id, offset, err)
		}
		for _, b := range batches {
			if b.BaseOffset >= hw {
				break
			}
			out.Batches = append(out.Batches, batchMessage(b))
		}
		return out, nil
	}
	entries, err := l.Read(offset, opts.MaxBytes)
	if e.refreshedKeys(ctx, l.project, err) {
		entries, err = l.Read(offset, opts.MaxBytes)
	}
	if errors.Is(err, partitionlog.ErrOffsetOutOfRange) {
		// Retention removed the segment between StartOffset and Read.
		entries, err = l.Read(l.StartOffset(), opts.MaxBytes)
	}
	if lost, ok := e.lostRange(id, err, hw); ok {
		if err := e.leaderLost(u, id, err); err != nil {
			return ReadResult{}, err
		}
		out.Lost = lost
		return out, nil
	}
	if err != nil {
		return ReadResult{}, e.readError(id, offset, err)
	}
	out.Records = make([]*storagev1.StoredRecord, 0, len(entries))
	for _, en := range entries {
		if en.Offset >= hw {
			break
		}
		rec := &storagev1.Record{}
		if err := proto.Unmarshal(en.Data, rec); err != nil {
			return ReadResult{}, fmt.Errorf("storage: %s offset %d: undecodable record: %w", logid.Describe(id), en.Offset, err)
		}
		out.Records = append(out.Records, &storagev1.StoredRecord{Offset: en.Offset, Record: rec})
	}
	return out, nil
}

// lostRange turns a read's LostRangeError into the range a reader skips
// (below the high watermark hw).
func (e *Engine) lostRange(id logid.ID, err error, hw int64) (*storagev1.LostRange, bool) {
	var lost *partitionlog.LostRangeError
	if !errors.As(err, &lost) {
		return nil, false
	}
	e.logger.Debug("storage: a read met lost data", "log", logid.Describe(id), "from", lost.From, "to", lost.To, "detail", lost.Detail)
	return &storagev1.LostRange{FirstOffset: lost.From, LastOffset: min(lost.To, hw-1)}, true
}

// readError is what a failed read answers. Damage that is not a lost range
// (an encrypted batch that fails authentication: tampering or a wrong key)
// names the file and position in the server's log only, never to the
// client, which learns the log and the offset.
func (e *Engine) readError(id logid.ID, offset int64, err error) error {
	if errors.Is(err, partitionlog.ErrCorrupt) {
		e.logger.Error("storage: a read found data that fails verification", "log", logid.Describe(id), "offset", offset, "err", err)
		return errs.Wrapf(errs.ErrInternal, "storage: %s: the data at offset %d fails verification (encrypted data that does not authenticate); the server log names the file", logid.Describe(id), offset)
	}
	return fmt.Errorf("storage: %s: reading from offset %d: %w", logid.Describe(id), offset, err)
}

// waitVisible waits until a log has a visible record at offset or ctx
// ends.
func (e *Engine) waitVisible(ctx context.Context, u *unit, l *openLog, offset int64) error {
	if u == nil {
		return l.WaitFor(ctx, offset)
	}
	for {
		u.mu.Lock()
		hw, changed := u.hwLocked(logid.Key(l.id), l.NextOffset()), u.hwChanged
		alone := len(u.st.GetIsr()) <= 1
		u.mu.Unlock()
		if hw > offset {
			return nil
		}
		if alone {
			// Without followers the high watermark is the log's end.
			return l.WaitFor(ctx, offset)
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Info describes a log, on its leader: its next offset is the high
// watermark. A log never written to has empty ranges.
func (e *Engine) Info(ctx context.Context, id logid.ID) (*storagev1.LogInfo, error) {
	if err := logid.Validate(id); err != nil {
		return nil, err
	}
	u, err := e.leaderFor(id, 0)
	if err != nil {
		return nil, err
	}
	l, err := e.open(ctx, id, false, storagev1.Durability_DURABILITY_UNSPECIFIED)
	if err != nil {
		return nil, err
	}
	info := &storagev1.LogInfo{Log: id}
	if l != nil {
		info.StartOffset, info.NextOffset, info.SizeBytes = l.StartOffset(), l.NextOffset(), l.Size()
		if u != nil {
			info.NextOffset = u.hw(logid.Key(id), l.NextOffset())
		}
	}
	return info, nil
}

// TrimLog deletes the segments of an internal log below offset and returns
// the log's new start.
func (e *Engine) TrimLog(ctx context.Context, id logid.ID, before, writerEpoch int64) (int64, error) {
	if !logid.IsInternal(id) {
		return 0, errs.Wrapf(errs.ErrResourceNameInvalid, "storage: %s is not an internal log; queue partitions shrink by retention only", logid.Describe(id))
	}
	if err := e.checkWriter(ctx, id, writerEpoch); err != nil {
		return 0, err
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
	if _, err := e.leaderFor(id, 0); err != nil {
		return 0, err
	}
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
