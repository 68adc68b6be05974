// Package audit keeps the cluster's audit trail: one internal storage log
// (logid.Audit, replicated like every log) of dms.v1.AuditRecord payloads,
// each holding the SHA-256 of the stored bytes of the record before it, so
// that a record changed, removed or inserted afterwards breaks the chain
// at the next one.
//
// One writer keeps the chain one line: the owner of delivery shard 0, in
// its owner epoch, which storage checks on every append, so that a former
// owner cannot write after a failover. A new owner first reads the log to
// its end (a fencing read) to learn the hash it continues from. Every node
// records the calls it serves and sends its records to the owner
// (dms.cluster.audit.v1.AuditWriterService); until one takes them they
// wait in memory, retried every second.
package audit

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/errs"
	"github.com/opendms/dms/services/storage/logid"
)

// Ownership says which node writes the trail, and in which epoch.
type Ownership interface {
	AuditOwner() (epoch int64, owner string, mine bool)
}

// Sender sends records to the node that writes the trail.
type Sender func(ctx context.Context, node string, recs []*dmsv1.AuditRecord) error

// Config configures the trail.
type Config struct {
	// Retention is how long records are kept; 0 keeps them forever.
	Retention time.Duration `yaml:"retention"`
}

// DefaultRetention is the default of -audit.retention: 90 days, a common
// requirement of audit policies.
const DefaultRetention = 90 * 24 * time.Hour

// queueSize bounds the records waiting to be written: a burst of denied
// requests beyond it is counted (Dropped) rather than slowing every caller.
const queueSize = 8192

// Trail writes and reads the audit trail.
type Trail struct {
	cfg     Config
	storage storagev1.StorageServiceClient
	own     Ownership
	send    Sender
	now     func() time.Time
	logger  *slog.Logger

	in       chan *dmsv1.AuditRecord
	acceptMu sync.Mutex // one Accept at a time, so that its room check holds
	dropped  atomic.Int64

	// The writer's state, on its goroutine only.
	epoch    int64
	lastHash []byte
	loaded   bool
	trimmed  time.Time

	stopOnce sync.Once
	stop     chan struct{}
	done     chan struct{}
}

// New makes a trail; Start runs its writer.
func New(cfg Config, storage storagev1.StorageServiceClient, own Ownership, send Sender, now func() time.Time, logger *slog.Logger) *Trail {
	return &Trail{cfg: cfg, storage: storage, own: own, send: send, now: now, logger: logger,
		in: make(chan *dmsv1.AuditRecord, queueSize), stop: make(chan struct{}), done: make(chan struct{})}
}

// Record queues a record for the trail. It never blocks: when the queue is
// full the record is dropped, counted and logged.
func (t *Trail) Record(r *dmsv1.AuditRecord) {
	select {
	case t.in <- r:
	default:
		// Logged at the 1st, 2nd, 4th, 8th... drop: a flood of refused
		// calls must not become a flood of log lines too.
		if n := t.dropped.Add(1); n&(n-1) == 0 {
			t.logger.Error("audit: records dropped, the trail's queue is full", "dropped_total", n, "action", r.GetAction(), "principal", r.GetPrincipal())
		}
	}
}

// Accept queues records another node sent, when this node writes the
// trail; all or none, so that the sender's retry stores no duplicate.
func (t *Trail) Accept(recs []*dmsv1.AuditRecord) error {
	if _, owner, mine := t.own.AuditOwner(); !mine {
		return errs.Wrapf(errs.ErrUnavailable, "audit: node %q writes the trail, not this one", owner)
	}
	t.acceptMu.Lock()
	defer t.acceptMu.Unlock()
	if cap(t.in)-len(t.in) < len(recs) {
		return errs.Wrapf(errs.ErrUnavailable, "audit: the trail's queue is full; retry")
	}
	for _, r := range recs {
		t.in <- r
	}
	return nil
}

// Dropped counts the records dropped since the start.
func (t *Trail) Dropped() int64 { return t.dropped.Load() }

// Start runs the writer until Stop.
func (t *Trail) Start() { go t.run() }

// Stop writes what is queued (for a short while) and stops the writer.
func (t *Trail) Stop(ctx context.Context) error {
	t.stopOnce.Do(func() { close(t.stop) })
	select {
	case <-t.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// maxBatch bounds the records of one append.
const maxBatch = 256

func (t *Trail) run() {
	defer close(t.done)
	var batch []*dmsv1.AuditRecord
	failing := false
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	for {
		if len(batch) == 0 {
			select {
			case r := <-t.in:
				batch = append(batch, r)
			case <-t.stop:
				return
			}
		}
	fill:
		for len(batch) < maxBatch {
			select {
			case r := <-t.in:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		ctx, cancel := t.writeContext()
		err := t.write(ctx, batch)
		if err == nil {
			t.trim(ctx)
		}
		cancel()
		if err == nil {
			if failing {
				t.logger.Info("audit: writing the trail again", "records", len(batch))
			}
			failing = false
			batch = batch[:0]
			continue
		}
		t.loaded = false
		if !failing { // once per streak: a failover can take a while
			t.logger.Warn("audit: writing the trail failed; retrying every second", "records", len(batch), "err", err)
		}
		failing = true
		retry.Reset(time.Second)
		select {
		case <-retry.C:
		case <-t.stop:
			return
		}
	}
}

// writeContext bounds one write (and the retention pass after it): 10 s,
// and a second once the trail is stopping — a stopping node's storage
// answers NOT_LEADER, which the routed client retries until the context
// ends, and a stop must not wait the whole 10 s for that.
func (t *Trail) writeContext() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	go func() {
		select {
		case <-t.stop:
			select {
			case <-time.After(time.Second):
				cancel()
			case <-ctx.Done():
			}
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// errNoOwner: no node writes the trail now (a failover).
var errNoOwner = errors.New("audit: no node owns delivery shard 0, which writes the trail")

// write chains the records to the trail and appends them in one batch,
// or sends them to the node that does.
func (t *Trail) write(ctx context.Context, batch []*dmsv1.AuditRecord) error {
	epoch, owner, mine := t.own.AuditOwner()
	if !mine {
		t.loaded = false
		if owner == "" {
			return errNoOwner
		}
		return t.send(ctx, owner, batch)
	}
	if !t.loaded || epoch != t.epoch {
		if err := t.load(ctx, epoch); err != nil {
			return err
		}
	}
	recs := make([]*storagev1.Record, len(batch))
	prev := t.lastHash
	for i, r := range batch {
		r = proto.Clone(r).(*dmsv1.AuditRecord)
		r.Offset = 0
		r.PreviousHash = prev
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(r)
		if err != nil {
			return fmt.Errorf("audit: encoding a record: %w", err)
		}
		h := sha256.Sum256(b)
		prev = h[:]
		recs[i] = &storagev1.Record{TimestampMs: r.GetTime().AsTime().UnixMilli(), Payload: b}
	}
	if _, err := t.storage.Append(ctx, &storagev1.AppendRequest{Log: logid.Audit(), Records: recs, WriterEpoch: epoch,
		Durability: storagev1.Durability_DURABILITY_SYNC}); err != nil {
		return err
	}
	t.lastHash = prev
	return nil
}

// load reads the trail to its end in a new owner epoch, which fences the
// former owner, to learn the hash of the last record.
func (t *Trail) load(ctx context.Context, epoch int64) error {
	var last []byte
	err := scan(ctx, t.storage, 0, epoch, func(_ int64, payload []byte) bool {
		h := sha256.Sum256(payload)
		last = h[:]
		return true
	})
	if err != nil {
		return err
	}
	t.epoch, t.lastHash, t.loaded = epoch, last, true
	return nil
}

// trimEvery spaces the retention passes.
const trimEvery = time.Hour

// trim drops the records older than the retention, at most once an hour.
func (t *Trail) trim(ctx context.Context) {
	select {
	case <-t.stop:
		return // not while stopping: the next owner's pass does it
	default:
	}
	now := t.now()
	if t.cfg.Retention <= 0 || now.Sub(t.trimmed) < trimEvery {
		return
	}
	cutoff := now.Add(-t.cfg.Retention)
	before := int64(-1)
	err := scanRecords(ctx, t.storage, 0, t.epoch, func(off int64, rec *storagev1.Record) bool {
		if rec.GetTimestampMs() >= cutoff.UnixMilli() {
			before = off
			return false
		}
		return true
	})
	if err != nil {
		t.logger.Warn("audit: reading the trail for retention", "err", err)
		return
	}
	t.trimmed = now
	if before <= 0 {
		return
	}
	if _, err := t.storage.TrimLog(ctx, &storagev1.TrimLogRequest{Log: logid.Audit(), BeforeOffset: before, WriterEpoch: t.epoch}); err != nil {
		t.logger.Warn("audit: dropping records past the retention", "before", before, "err", err)
	}
}

// scan reads the trail's payloads from offset on, until fn returns false.
func scan(ctx context.Context, st storagev1.StorageServiceClient, offset, epoch int64, fn func(off int64, payload []byte) bool) error {
	return scanRecords(ctx, st, offset, epoch, func(off int64, rec *storagev1.Record) bool { return fn(off, rec.GetPayload()) })
}

// errLost reports offsets storage found damaged and could not repair.
type errLost struct{ first, last int64 }

func (e errLost) Error() string {
	return fmt.Sprintf("audit: offsets %d to %d of the trail are damaged on disk and could not be repaired", e.first, e.last)
}

func scanRecords(ctx context.Context, st storagev1.StorageServiceClient, offset, epoch int64, fn func(off int64, rec *storagev1.Record) bool) error {
	for {
		resp, err := st.Read(ctx, &storagev1.ReadRequest{Log: logid.Audit(), Offset: offset, MaxBytes: 4 << 20, WriterEpoch: epoch})
		if err != nil {
			return err
		}
		if offset < resp.GetStartOffset() && len(resp.GetRecords()) == 0 {
			offset = resp.GetStartOffset()
			continue
		}
		for _, r := range resp.GetRecords() {
			if !fn(r.GetOffset(), r.GetRecord()) {
				return nil
			}
			offset = r.GetOffset() + 1
		}
		if l := resp.GetLost(); l != nil {
			return errLost{l.GetFirstOffset(), l.GetLastOffset()}
		}
		if len(resp.GetRecords()) == 0 || offset >= resp.GetNextOffset() {
			return nil
		}
	}
}
