package ingest

import (
	"context"
	"sync"
	"time"

	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/catalog"
	"github.com/opendms/dms/services/errs"
	"github.com/opendms/dms/services/message"
	"github.com/opendms/dms/services/storage/logid"
)

// quotas enforces a project's send quotas (dms.v1.ProjectQuotas) on the
// sends this node takes: the largest message and the send rates, as token
// buckets per project holding one second's worth. A batch is admitted
// while its project's buckets hold any token at all and then takes what it
// needs, the buckets going into debt, so that a batch larger than a
// second's worth is admitted too and the rate over time still holds. A
// refused send stores nothing and is RATE_LIMITED: the caller sends again
// later, while other projects' sends never wait on this one's. The refusal
// is answered once the bucket would have admitted it (at most a second
// later), as Kafka's brokers delay the answers of a client over its quota:
// a producer that retries at once cannot make the node decode and refuse
// thousands of batches a second for nothing, which would slow the others.
//
// The buckets are this node's: a project whose sends several nodes take
// gets its rate on each of them.
type quotas struct {
	cache   *catalog.Cache
	storage storagev1.StorageServiceClient
	now     func() time.Time

	mu      sync.Mutex
	buckets map[string]*sendBucket
	stored  map[string]*storedUsage
}

// storedUsage is a project's stored bytes as last measured.
type storedUsage struct {
	bytes      int64
	measured   time.Time // by the wall clock: a measurement, not a deadline
	measuring  bool
	measuredOK bool
}

// storedUsageAge is how old a measurement of stored bytes may be before a
// send measures again (in the background: the send goes by the last one).
const storedUsageAge = 2 * time.Second

type sendBucket struct {
	msgs, bytes float64 // tokens left; negative is debt
	last        time.Time
}

func newQuotas(cache *catalog.Cache, storage storagev1.StorageServiceClient, now func() time.Time) *quotas {
	return &quotas{cache: cache, storage: storage, now: now, buckets: map[string]*sendBucket{}, stored: map[string]*storedUsage{}}
}

// storedOver reports whether the project's queues hold its max_stored_bytes
// or more, by the last measurement, and starts a new one when it is old.
func (q *quotas) storedOver(project string, limit int64) (int64, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	u := q.stored[project]
	if u == nil {
		u = &storedUsage{}
		q.stored[project] = u
	}
	if !u.measuring && time.Since(u.measured) > storedUsageAge {
		u.measuring = true
		go q.measure(project, u)
	}
	return u.bytes, u.measuredOK && u.bytes >= limit
}

// measure sums the bytes on disk of the project's queue partitions, as
// their leaders report them.
func (q *quotas) measure(project string, u *storedUsage) {
	var logs []*storagev1.LogId
	for _, rec := range q.cache.Queues(project) {
		for p := range rec.GetPartitionCount() {
			logs = append(logs, logid.Partition(rec.GetId(), p))
		}
	}
	var total int64
	ok := true
	if len(logs) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		info, err := q.storage.GetLogInfo(ctx, &storagev1.GetLogInfoRequest{Logs: logs})
		cancel()
		ok = err == nil
		for _, l := range info.GetLogs() {
			total += l.GetSizeBytes()
		}
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	u.measuring, u.measured = false, time.Now()
	if ok {
		u.bytes, u.measuredOK = total, true
	}
}

// maxRefusalDelay bounds how long a refused send waits for its answer.
const maxRefusalDelay = time.Second

// Quotas is the admission check of every front end: the native API, the
// internal Publish that AMQP publishes through, and Kafka's Produce (which
// appends its batches to storage itself). One per process, so that the
// front ends of a node share a project's buckets.
type Quotas = quotas

// NewQuotas returns the quota check over the catalog's quotas, measuring
// stored bytes through storage.
func NewQuotas(cache *catalog.Cache, storage storagev1.StorageServiceClient) *Quotas {
	return newQuotas(cache, storage, time.Now)
}

// admit checks a send of msgs to a queue of project against the project's
// quotas, and takes its share of the rates. A send refused for its rate
// waits, before it is answered, until the bucket holds a token again.
func (q *quotas) admit(ctx context.Context, project string, msgs []*dmsv1.Message) error {
	wait, err := q.take(project, msgs)
	q.hold(ctx, wait)
	return err
}

// Admit is admit for the front ends that call it themselves.
func (q *quotas) Admit(ctx context.Context, project string, msgs []*dmsv1.Message) error {
	return q.admit(ctx, project, msgs)
}

// AdmitBatch checks a batch that is not made of messages (a Kafka record
// batch): count records, bytes in all, the largest record largest bytes
// (index largestAt). A batch over the rate is refused (RATE_LIMITED) once
// the bucket would admit it, as admit does. An admitted one returns
// throttle, how long until the project's buckets hold a token again: for
// the protocols whose clients back off by themselves (Kafka's
// throttle_time_ms, KIP-219).
func (q *quotas) AdmitBatch(ctx context.Context, project string, count, bytes, largest, largestAt int) (throttle time.Duration, err error) {
	own := q.cache.ProjectQuotas(project)
	if own == nil {
		return 0, nil
	}
	wait, err := q.takeSized(own, project, count, bytes, largest, largestAt)
	if err != nil {
		q.hold(ctx, wait)
		return 0, err
	}
	return q.debt(own, project), nil
}

// debt is how long until the project's buckets hold a token again.
func (q *quotas) debt(own *dmsv1.ProjectQuotas, project string) time.Duration {
	msgRate, byteRate := float64(own.GetSendMessagesPerSecond()), float64(own.GetSendBytesPerSecond())
	q.mu.Lock()
	defer q.mu.Unlock()
	b := q.buckets[project]
	if b == nil {
		return 0
	}
	var wait float64
	if msgRate > 0 && b.msgs <= 0 {
		wait = max(wait, (1-b.msgs)/msgRate)
	}
	if byteRate > 0 && b.bytes <= 0 {
		wait = max(wait, (1-b.bytes)/byteRate)
	}
	return time.Duration(wait * float64(time.Second))
}

// hold waits for a refused send's answer (at most maxRefusalDelay, or until
// ctx ends).
func (q *quotas) hold(ctx context.Context, wait time.Duration) {
	if wait <= 0 {
		return
	}
	t := time.NewTimer(min(wait, maxRefusalDelay))
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// take is admit without the wait: it returns how long a refused send
// should wait.
func (q *quotas) take(project string, msgs []*dmsv1.Message) (time.Duration, error) {
	own := q.cache.ProjectQuotas(project)
	if own == nil {
		return 0, nil
	}
	var total, largest, largestAt int
	for i, m := range msgs {
		size := message.Size(m)
		if size > largest {
			largest, largestAt = size, i
		}
		total += size
	}
	return q.takeSized(own, project, len(msgs), total, largest, largestAt)
}

// takeSized is take of count messages, total bytes in all, the largest
// largest bytes (the message at index largestAt).
func (q *quotas) takeSized(own *dmsv1.ProjectQuotas, project string, count, total, largest, largestAt int) (time.Duration, error) {
	if limit := int(own.GetMaxMessageBytes()); limit > 0 && largest > limit {
		return 0, errs.Wrapf(errs.ErrMessageTooLarge, "message %d is %d bytes; project %s allows at most %d per message (its quota)", largestAt, largest, project, limit)
	}
	if limit := own.GetMaxStoredBytes(); limit > 0 {
		if used, over := q.storedOver(project, limit); over {
			return 0, errs.Wrapf(errs.ErrStorageQuotaExceeded, "project %s stores %d bytes, its quota is %d: nothing was stored; delete queues or wait for retention, or ask the operator for more", project, used, limit)
		}
	}
	msgRate, byteRate := float64(own.GetSendMessagesPerSecond()), float64(own.GetSendBytesPerSecond())
	if msgRate <= 0 && byteRate <= 0 {
		return 0, nil
	}
	now := q.now()
	q.mu.Lock()
	defer q.mu.Unlock()
	b := q.buckets[project]
	if b == nil {
		b = &sendBucket{msgs: msgRate, bytes: byteRate, last: now}
		q.buckets[project] = b
	}
	if elapsed := now.Sub(b.last).Seconds(); elapsed > 0 {
		b.msgs = min(msgRate, b.msgs+elapsed*msgRate)
		b.bytes = min(byteRate, b.bytes+elapsed*byteRate)
		b.last = now
	}
	var wait float64 // seconds until every limited bucket holds a token
	if msgRate > 0 && b.msgs <= 0 {
		wait = max(wait, (1-b.msgs)/msgRate)
	}
	if byteRate > 0 && b.bytes <= 0 {
		wait = max(wait, (1-b.bytes)/byteRate)
	}
	if wait > 0 {
		d := time.Duration(wait * float64(time.Second))
		when := "now"
		if rest := d - maxRefusalDelay; rest > 0 {
			when = "in " + rest.Round(time.Millisecond).String()
		}
		return d, errs.Wrapf(errs.ErrRateLimited, "project %s sends faster than its quota (%g messages/s, %g bytes/s; 0 = unlimited) allows: nothing was stored; the answer was held until the rate admits a send, so send again %s",
			project, msgRate, byteRate, when)
	}
	if msgRate > 0 {
		b.msgs -= float64(count)
	}
	if byteRate > 0 {
		b.bytes -= float64(total)
	}
	return 0, nil
}
