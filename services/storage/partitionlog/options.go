package partitionlog

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Durability selects when Append acknowledges a write.
type Durability int

const (
	// DurabilitySync makes Append return only after the data has been fsynced.
	// Concurrent appends are group-committed: they share one write and one
	// fsync. Records become visible to readers only once fsynced.
	DurabilitySync Durability = iota
	// DurabilityAsync makes Append return once the data has been handed to the
	// operating system with write(2). A background flusher fsyncs every
	// FlushInterval. Records become visible to readers once written.
	DurabilityAsync
)

// String implements fmt.Stringer.
func (d Durability) String() string {
	switch d {
	case DurabilitySync:
		return "sync"
	case DurabilityAsync:
		return "async"
	default:
		return fmt.Sprintf("Durability(%d)", int(d))
	}
}

// Default option values.
const (
	DefaultSegmentBytes       = 64 << 20
	DefaultIndexIntervalBytes = 4096
	DefaultMaxBatchBytes      = 8 << 20
	DefaultFlushInterval      = 200 * time.Millisecond

	// maxSegmentBytes and maxMaxBatchBytes keep every file position of a
	// segment (at most SegmentBytes plus one batch) representable in the
	// uint32 position field of the offset index.
	maxSegmentBytes  = 2 << 30
	maxMaxBatchBytes = 1 << 30
)

// Options configures a Log. The zero value of every field except Dir selects
// its default.
type Options struct {
	Dir                string           // directory owned by this log (created if missing)
	SegmentBytes       int64            // roll to a new segment past this size; default 64 MiB
	IndexIntervalBytes int              // one sparse index entry (offset and time) every N bytes of batches; default 4096
	MaxBatchBytes      int              // an Append whose encoded batch exceeds this fails with ErrBatchTooLarge; default 8 MiB
	Durability         Durability       // DurabilitySync (default) or DurabilityAsync
	FlushInterval      time.Duration    // async mode; default 200ms
	Now                func() time.Time // injected clock for retention; default time.Now
	Logger             *slog.Logger     // default slog.Default()
	// Keys turns on encryption at rest: new batches are sealed with the
	// active key, and batches sealed with any key of the ring can be read.
	// Nil (the default) writes plaintext; a log holding encrypted batches
	// then fails to Open with an error wrapping ErrEncryptionKey.
	Keys *Keyring
	// OnPublish, if set, is called with the new NextOffset whenever it
	// changes: after a group commit (sync mode) or a write (async mode)
	// publishes appends (before those appends return), and after TruncateTo
	// and Reset. Calls are made one at a time, in order, from the log's
	// writer or syncer goroutine, with no lock of the log held, so that one
	// storage engine can wake long polls on many logs without a goroutine
	// per log. The callback delays the appends being acknowledged and the
	// log's next group, so it must be quick and must not block; it may
	// call the log's read methods (NextOffset, Read, ReadBatches, WaitFor
	// with a done context, ...), but must not wait for an Append,
	// AppendBatch, AppendBatchAt, TruncateTo, Reset or Close of the same
	// log, which would deadlock.
	OnPublish func(next int64)
	// OnDamage, if set, is told of every damaged range the log quarantines
	// (at Open, by a background repair or by Scrub; r.Torn for a torn tail
	// cut off), after it is repaired: for metrics.
	OnDamage func(r Repair)
	// OnLost, if set, is told of offsets the log holds as lost: whenever a
	// repair marks a damaged range lost, and whenever a reader or Scrub
	// meets such a range (or damage not yet repaired). A replicated log
	// uses it to fetch those offsets again from another replica. It may be
	// called for the same range many times, from any goroutine, possibly
	// during Open and with the log's internal locks held: it must be quick,
	// must not block, and must not call the log.
	OnLost func(from, to int64)
	// OnSync, if set, is told how long each fsync of segment data took,
	// from the goroutine that issued it: for metrics. It must be quick.
	OnSync func(d time.Duration)
}

func (o Options) withDefaults() (Options, error) {
	if o.Dir == "" {
		return o, errors.New("partitionlog: invalid options: Dir is empty")
	}
	if o.SegmentBytes == 0 {
		o.SegmentBytes = DefaultSegmentBytes
	}
	if o.IndexIntervalBytes == 0 {
		o.IndexIntervalBytes = DefaultIndexIntervalBytes
	}
	if o.MaxBatchBytes == 0 {
		o.MaxBatchBytes = DefaultMaxBatchBytes
	}
	if o.FlushInterval == 0 {
		o.FlushInterval = DefaultFlushInterval
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	switch {
	case o.SegmentBytes < 0 || o.SegmentBytes > maxSegmentBytes:
		return o, fmt.Errorf("partitionlog: invalid options: SegmentBytes %d not in [1, %d]", o.SegmentBytes, int64(maxSegmentBytes))
	case o.IndexIntervalBytes < 0:
		return o, fmt.Errorf("partitionlog: invalid options: IndexIntervalBytes %d is negative", o.IndexIntervalBytes)
	case o.MaxBatchBytes < batchHeaderSize+2 || o.MaxBatchBytes > maxMaxBatchBytes:
		return o, fmt.Errorf("partitionlog: invalid options: MaxBatchBytes %d not in [%d, %d]", o.MaxBatchBytes, batchHeaderSize+2, maxMaxBatchBytes)
	case o.Durability != DurabilitySync && o.Durability != DurabilityAsync:
		return o, fmt.Errorf("partitionlog: invalid options: unknown durability %d", int(o.Durability))
	case o.FlushInterval < 0:
		return o, fmt.Errorf("partitionlog: invalid options: FlushInterval %v is negative", o.FlushInterval)
	}
	return o, nil
}

// Record is one record handed to Append.
type Record struct {
	Timestamp int64  // unix milliseconds, supplied by the caller
	Data      []byte // opaque payload
}

// Entry is one record returned by Read.
type Entry struct {
	Offset    int64
	Timestamp int64
	Data      []byte
}

// Sentinel errors. Errors returned by this package wrap them with %w, so test
// with errors.Is.
var (
	ErrClosed           = errors.New("partitionlog: log is closed")
	ErrBatchTooLarge    = errors.New("partitionlog: batch too large")
	ErrOffsetOutOfRange = errors.New("partitionlog: offset out of range") // reading below StartOffset (data deleted by retention); reading at/after NextOffset is NOT an error: it returns no entries
	ErrCorrupt          = errors.New("partitionlog: corrupt data")        // wrapped with which segment file and offsets
)
