package msgtrace

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	metadatav1 "github.com/opendms/dms/gen/go/dms/cluster/metadata/v1"
	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/catalog"
	"github.com/opendms/dms/services/errs"
	"github.com/opendms/dms/services/placement"
	"github.com/opendms/dms/services/recordfmt"
	"github.com/opendms/dms/services/storage/logid"
)

// Limits of one query.
const (
	// DefaultMaxMessages and MaxMessages bound the traces of a key or a
	// time range.
	DefaultMaxMessages = 10
	MaxMessages        = 100
	// idWindow is how far around the time in a message id the partitions
	// are searched first: the id is taken right after the batch's
	// timestamp, on the same clock, so a second covers clock steps.
	idWindow = time.Second
	// scanBytes bounds what one query reads of one log, so that a trace of
	// a message the window missed (a scheduled message, stored when
	// released) or of a key cannot turn into a read of the whole queue.
	scanBytes = 64 << 20
	readBytes = 1 << 20
)

// Engine assembles traces.
type Engine struct {
	storage   storagev1.StorageServiceClient
	cache     *catalog.Cache
	placement *placement.Cache
	now       func() time.Time
}

// NewEngine returns an engine reading logs through storage (routed to each
// log's leader, so any node answers).
func NewEngine(storage storagev1.StorageServiceClient, cache *catalog.Cache, placements *placement.Cache, now func() time.Time) *Engine {
	return &Engine{storage: storage, cache: cache, placement: placements, now: now}
}

// found is a message located in its partition.
type found struct {
	partition int32
	offset    int64
	rec       *storagev1.Record
	producer  *storagev1.ProducerInfo
	frontEnd  string
}

// Trace answers GetMessageTrace.
func (e *Engine) Trace(ctx context.Context, req *dmsv1.GetMessageTraceRequest) (*dmsv1.GetMessageTraceResponse, error) {
	q, err := e.cache.ResolveQueueName(ctx, req.GetQueue())
	if err != nil {
		return nil, err
	}
	groups := e.cache.Groups(q.GetId())
	if ref := req.GetGroup(); ref != "" {
		g, err := e.resolveGroup(ctx, q, ref)
		if err != nil {
			return nil, err
		}
		groups = []*metadatav1.GroupRecord{g}
	}
	var (
		from, until int64 = 0, e.now().UnixMilli() + 1
		timed             = req.GetStartTime() != nil || req.GetEndTime() != nil
	)
	if req.GetStartTime() != nil {
		from = req.GetStartTime().AsTime().UnixMilli()
	}
	if req.GetEndTime() != nil {
		until = req.GetEndTime().AsTime().UnixMilli()
	}
	if until <= from {
		return nil, errs.Wrapf(errs.ErrRequestInvalid, "end_time must be after start_time")
	}
	maxMessages := int(req.GetMaxMessages())
	switch {
	case maxMessages < 0 || maxMessages > MaxMessages:
		return nil, errs.Wrapf(errs.ErrMaxMessagesInvalid, "max_messages must be 1 to %d, got %d", MaxMessages, maxMessages)
	case maxMessages == 0:
		maxMessages = DefaultMaxMessages
	}
	var (
		msgs      []found
		truncated bool
	)
	switch id, key := req.GetMessageId(), req.GetOrderingKey(); {
	case id != "" && key != "":
		return nil, errs.Wrapf(errs.ErrRequestInvalid, "give message_id or ordering_key, not both")
	case id != "":
		f, err := e.findByID(ctx, q, id, from, until, timed)
		if err != nil {
			return nil, err
		}
		msgs = []found{f}
	case key != "" || req.GetStartTime() != nil:
		msgs, truncated, err = e.findRange(ctx, q, key, from, until, maxMessages)
		if err != nil {
			return nil, err
		}
	default:
		return nil, errs.Wrapf(errs.ErrRequestInvalid, "give a message_id, an ordering_key or a start_time")
	}
	resp := &dmsv1.GetMessageTraceResponse{Truncated: truncated}
	if len(msgs) == 0 {
		return resp, nil
	}
	traces := make([]*dmsv1.MessageTrace, len(msgs))
	for i, f := range msgs {
		traces[i] = e.base(q, f)
	}
	if err := e.addStorage(ctx, q, msgs, traces); err != nil {
		return nil, err
	}
	for _, g := range groups {
		if err := e.addGroup(ctx, q, g, msgs, traces); err != nil {
			return nil, err
		}
	}
	for _, t := range traces {
		sortEvents(t.Events)
	}
	resp.Traces = traces
	return resp, nil
}

func (e *Engine) resolveGroup(ctx context.Context, q *metadatav1.QueueRecord, ref string) (*metadatav1.GroupRecord, error) {
	if strings.HasPrefix(ref, "projects/") {
		gq, g, err := e.cache.ResolveGroupName(ctx, ref)
		if err != nil {
			return nil, err
		}
		if gq.GetId() != q.GetId() {
			return nil, errs.Wrapf(errs.ErrRequestInvalid, "group %q is not a group of queue %q", ref, q.GetDisplayName())
		}
		return g, nil
	}
	return e.cache.ResolveGroup(ctx, q, ref)
}

// findByID finds a message by id: first in a second around the time its
// id carries, then on from there (or in the time range given).
func (e *Engine) findByID(ctx context.Context, q *metadatav1.QueueRecord, id string, from, until int64, timed bool) (found, error) {
	u, err := uuid.Parse(id)
	if err != nil {
		return found{}, errs.Wrapf(errs.ErrRequestInvalid, "message_id %q is not a message id (a UUID)", id)
	}
	var windows [][2]int64
	if !timed && u.Version() == 7 {
		sec, nsec := u.Time().UnixTime()
		t := time.Unix(sec, nsec).UnixMilli()
		windows = append(windows, [2]int64{t - idWindow.Milliseconds(), t + idWindow.Milliseconds()},
			// Then the whole partition, up to scanBytes: a scheduled
			// message is stored when it is released, up to 7 days later,
			// and a clock may have been stepped.
			[2]int64{0, until})
	} else {
		windows = append(windows, [2]int64{from, until})
	}
	for _, w := range windows {
		for p := range q.GetPartitionCount() {
			var hit *found
			err := e.scan(ctx, logid.Partition(q.GetId(), p), w[0], w[1], func(f found) bool {
				if f.rec.GetMessageId() == id {
					f.partition = p
					hit = &f
					return false
				}
				return true
			})
			if err != nil {
				return found{}, err
			}
			if hit != nil {
				return *hit, nil
			}
		}
	}
	return found{}, errs.Wrapf(errs.ErrMessageNotFound, "no message %s in queue %q (deleted by retention, or never stored there)", id, q.GetDisplayName())
}

// findRange finds the messages of a key or a time range, oldest first.
func (e *Engine) findRange(ctx context.Context, q *metadatav1.QueueRecord, key string, from, until int64, limit int) ([]found, bool, error) {
	var out []found
	truncated := false
	for p := range q.GetPartitionCount() {
		n := 0
		err := e.scan(ctx, logid.Partition(q.GetId(), p), from, until, func(f found) bool {
			if key != "" && f.rec.GetMessage().GetOrderingKey() != key {
				return true
			}
			if n == limit {
				truncated = true
				return false
			}
			f.partition = p
			out = append(out, f)
			n++
			return true
		})
		if err != nil {
			return nil, false, err
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		return out[i].rec.GetTimestampMs() < out[j].rec.GetTimestampMs()
	})
	if len(out) > limit {
		out, truncated = out[:limit], true
	}
	return out, truncated, nil
}

// scan calls fn with each message of a queue partition stored in [from,
// until), with the producer of its batch, until fn returns false, the range
// ends or scanBytes were read.
func (e *Engine) scan(ctx context.Context, log logid.ID, from, until int64, fn func(found) bool) error {
	start, err := e.storage.FindOffset(ctx, &storagev1.FindOffsetRequest{Log: log, TimestampMs: from})
	if err != nil {
		return err
	}
	offset, read := start.GetOffset(), 0
	for read < scanBytes {
		resp, err := e.storage.Read(ctx, &storagev1.ReadRequest{Log: log, Offset: offset, MaxBytes: readBytes, RawBatches: true})
		if err != nil {
			return err
		}
		if lost := resp.GetLost(); lost != nil && len(resp.GetBatches()) == 0 {
			offset = lost.GetLastOffset() + 1
			continue
		}
		if len(resp.GetBatches()) == 0 {
			return nil
		}
		for _, b := range resp.GetBatches() {
			read += len(b.GetData())
			if b.GetFirstTimestampMs() >= until {
				return nil
			}
			recs, err := recordfmt.Decode(b, 0, 0, nil)
			if err != nil {
				return err
			}
			frontEnd := ""
			var producer *storagev1.ProducerInfo
			if b.GetFormat() == storagev1.BatchFormat_BATCH_FORMAT_KAFKA {
				frontEnd = "kafka"
			} else if len(recs) > 0 {
				producer = recs[0].GetRecord().GetProducer()
				frontEnd = producer.GetFrontEnd()
			}
			for _, r := range recs {
				next := r.GetOffset() + 1
				if next > offset {
					offset = next
				}
				if r.GetOffset() < start.GetOffset() || r.GetRecord().GetTimestampMs() < from || r.GetRecord().GetTimestampMs() >= until {
					continue
				}
				if !fn(found{offset: r.GetOffset(), rec: r.GetRecord(), producer: producer, frontEnd: frontEnd}) {
					return nil
				}
			}
		}
		if offset >= resp.GetNextOffset() {
			return nil
		}
	}
	return nil
}

// base is a trace with what the message's own record says.
func (e *Engine) base(q *metadatav1.QueueRecord, f found) *dmsv1.MessageTrace {
	m := f.rec.GetMessage()
	t := &dmsv1.MessageTrace{
		MessageId:   f.rec.GetMessageId(),
		Queue:       catalog.QueueResource(q.GetProject(), q.GetId()),
		Partition:   f.partition,
		Offset:      f.offset,
		PublishTime: msTime(f.rec.GetTimestampMs()),
		OrderingKey: m.GetOrderingKey(),
		Tags:        m.GetTags(),
		Producer:    f.producer.GetPrincipal(),
		FrontEnd:    f.frontEnd,
	}
	tp := m.GetAttributes()["traceparent"].GetStringValue()
	if tp == "" {
		tp = f.producer.GetTraceparent()
	}
	t.TraceContext = parseTraceparent(tp)
	if u, err := uuid.Parse(t.MessageId); err == nil && u.Version() == 7 {
		sec, nsec := u.Time().UnixTime()
		if sent := time.Unix(sec, nsec); f.rec.GetTimestampMs()-sent.UnixMilli() > idWindow.Milliseconds() {
			// Stored well after its id was given: a scheduled message,
			// released when due.
			t.Events = append(t.Events, &dmsv1.MessageTraceEvent{
				Time: timestamppb.New(sent), Type: dmsv1.MessageTraceEventType_MESSAGE_TRACE_EVENT_TYPE_SCHEDULED,
				AvailableTime: t.PublishTime, Detail: "sent with a delay; held by the scheduler until due",
			})
		}
	}
	t.Events = append(t.Events, &dmsv1.MessageTraceEvent{
		Time: t.PublishTime, Type: dmsv1.MessageTraceEventType_MESSAGE_TRACE_EVENT_TYPE_PRODUCED,
		Offset: f.offset, Detail: fmt.Sprintf("stored in partition %d at offset %d", f.partition, f.offset),
	})
	return t
}

// parseTraceparent reads a W3C traceparent; nil when there is none.
func parseTraceparent(tp string) *dmsv1.TraceContext {
	if tp == "" {
		return nil
	}
	tc := &dmsv1.TraceContext{Traceparent: tp}
	parts := strings.Split(tp, "-")
	if len(parts) >= 4 && len(parts[1]) == 32 && len(parts[2]) == 16 {
		tc.TraceId, tc.SpanId = parts[1], parts[2]
	}
	return tc
}

// addStorage fills in where each message's partition is kept.
func (e *Engine) addStorage(ctx context.Context, q *metadatav1.QueueRecord, msgs []found, traces []*dmsv1.MessageTrace) error {
	var logs []*storagev1.LogId
	for _, f := range msgs {
		logs = append(logs, logid.Partition(q.GetId(), f.partition))
	}
	info, err := e.storage.GetLogInfo(ctx, &storagev1.GetLogInfoRequest{Logs: logs})
	if err != nil {
		return err
	}
	for i, f := range msgs {
		s := &dmsv1.StorageState{}
		if st, ok := e.placement.Unit(placement.PartitionUnit(q.GetId(), f.partition)); ok {
			s.Replicas, s.InSyncReplicas, s.Leader = st.GetReplicas(), st.GetIsr(), st.GetLeader()
		}
		if i < len(info.GetLogs()) {
			li := info.GetLogs()[i]
			s.Committed = f.offset < li.GetNextOffset()
			s.Deleted = f.offset < li.GetStartOffset()
		}
		traces[i].Storage = s
	}
	return nil
}

func msTime(ms int64) *timestamppb.Timestamp { return timestamppb.New(time.UnixMilli(ms)) }

// sortEvents orders events by time, keeping the order they were found in
// (log order) within a millisecond.
func sortEvents(events []*dmsv1.MessageTraceEvent) {
	sort.SliceStable(events, func(i, j int) bool {
		return events[i].GetTime().AsTime().Before(events[j].GetTime().AsTime())
	})
}
