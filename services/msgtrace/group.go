package msgtrace

import (
	"context"
	"fmt"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	deliveryv1 "github.com/opendms/dms/gen/go/dms/cluster/delivery/v1"
	metadatav1 "github.com/opendms/dms/gen/go/dms/cluster/metadata/v1"
	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/catalog"
	"github.com/opendms/dms/services/storage/logid"
)

// Failure reasons, as the delivery role records them on dead letters.
const (
	reasonFailed    = "FAILED_BY_CONSUMER"
	reasonTimeout   = "VISIBILITY_TIMEOUT"
	reasonRedeliver = "REDELIVER_REQUESTED"
)

// Event types, short.
const (
	evDelivered   = dmsv1.MessageTraceEventType_MESSAGE_TRACE_EVENT_TYPE_DELIVERED
	evAcked       = dmsv1.MessageTraceEventType_MESSAGE_TRACE_EVENT_TYPE_ACKED
	evFailed      = dmsv1.MessageTraceEventType_MESSAGE_TRACE_EVENT_TYPE_FAILED
	evRedeliver   = dmsv1.MessageTraceEventType_MESSAGE_TRACE_EVENT_TYPE_REDELIVER_REQUESTED
	evTimeout     = dmsv1.MessageTraceEventType_MESSAGE_TRACE_EVENT_TYPE_VISIBILITY_TIMEOUT
	evExtended    = dmsv1.MessageTraceEventType_MESSAGE_TRACE_EVENT_TYPE_VISIBILITY_EXTENDED
	evDeadLetter  = dmsv1.MessageTraceEventType_MESSAGE_TRACE_EVENT_TYPE_DEAD_LETTERED
	evRedriven    = dmsv1.MessageTraceEventType_MESSAGE_TRACE_EVENT_TYPE_REDRIVEN
	evDLDelivered = dmsv1.MessageTraceEventType_MESSAGE_TRACE_EVENT_TYPE_DEAD_LETTER_DELIVERED
	evDLAcked     = dmsv1.MessageTraceEventType_MESSAGE_TRACE_EVENT_TYPE_DEAD_LETTER_ACKED
	evSeek        = dmsv1.MessageTraceEventType_MESSAGE_TRACE_EVENT_TYPE_SEEK
	evSkipped     = dmsv1.MessageTraceEventType_MESSAGE_TRACE_EVENT_TYPE_SKIPPED
	evTrimmed     = dmsv1.MessageTraceEventType_MESSAGE_TRACE_EVENT_TYPE_HISTORY_TRIMMED
)

// follow is one message's state in one group while its state log is
// replayed.
type follow struct {
	trace     *dmsv1.MessageTrace
	group     string
	seen      bool // an event or a checkpoint told something
	status    dmsv1.GroupTraceStatus
	attempts  int32
	deadline  int64 // in flight until, Unix ms
	deadAtMs  int64 // when dead-lettered, to find the dead letter
	redriveMs []int64
}

func (f *follow) add(ev *dmsv1.MessageTraceEvent) {
	ev.Group = f.group
	f.trace.Events = append(f.trace.Events, ev)
	f.seen = true
}

// timedOut records the visibility timeout of an in-flight delivery whose
// deadline passed before at.
func (f *follow) timedOut(at int64) bool {
	if f.status != dmsv1.GroupTraceStatus_GROUP_TRACE_STATUS_IN_FLIGHT || f.deadline == 0 || at < f.deadline {
		return false
	}
	f.add(&dmsv1.MessageTraceEvent{Time: msTime(f.deadline), Type: evTimeout, Reason: reasonTimeout, DeliveryCount: f.attempts})
	f.status = dmsv1.GroupTraceStatus_GROUP_TRACE_STATUS_PENDING
	return true
}

type position struct {
	partition int32
	offset    int64
}

// addGroup adds one group's events and state to the traces of msgs, from
// one pass over the group's state log.
func (e *Engine) addGroup(ctx context.Context, q *metadatav1.QueueRecord, g *metadatav1.GroupRecord, msgs []found, traces []*dmsv1.MessageTrace) error {
	name := catalog.GroupResource(q.GetProject(), q.GetId(), g.GetId())
	follows := map[position]*follow{}
	for i, f := range msgs {
		follows[position{f.partition, f.offset}] = &follow{trace: traces[i], group: name, status: dmsv1.GroupTraceStatus_GROUP_TRACE_STATUS_PENDING}
	}
	var historySince int64
	trimmedStart := false
	first := true
	err := e.readState(ctx, logid.GroupState(q.GetId(), g.GetId()), func(startOffset, offset int64, ts int64, rec *deliveryv1.StateRecord) {
		if first {
			first = false
			if startOffset > 0 {
				historySince, trimmedStart = ts, true
			}
		}
		// A range query follows up to 100 messages through a log of
		// records of ~100 offsets each: look only at the messages a
		// record names (snapshots, seeks and lost spans name ranges).
		var touched map[int64]bool
		if len(follows) > 1 && rec.GetSnapshot() == nil && rec.SeekOffset == nil && len(rec.GetLostOffsets()) == 0 {
			touched = offsetsOf(rec)
		}
		for pos, f := range follows {
			if pos.partition != rec.GetPartition() || (touched != nil && !touched[pos.offset]) {
				continue
			}
			apply(f, pos.offset, ts, rec, trimmedStart)
		}
	})
	if err != nil {
		return err
	}
	now := e.now().UnixMilli()
	for pos, f := range follows {
		f.timedOut(now)
		state := &dmsv1.GroupTraceState{Group: name, DisplayName: g.GetDisplayName(), Status: f.status, DeliveryCount: f.attempts}
		if historySince > 0 {
			state.HistorySince = msTime(historySince)
		}
		f.trace.Groups = append(f.trace.Groups, state)
		if f.deadAtMs > 0 || len(f.redriveMs) > 0 {
			if err := e.addDeadLetter(ctx, q, g, f, pos); err != nil {
				return err
			}
		}
	}
	return nil
}

// offsetsOf returns the offsets a state record names one by one.
func offsetsOf(rec *deliveryv1.StateRecord) map[int64]bool {
	out := map[int64]bool{}
	for _, list := range [][]int64{rec.GetRedrivenOffsets(), rec.GetDeliveredOffsets(), rec.GetExtendedOffsets(), rec.GetAckedOffsets(),
		rec.GetFailedOffsets(), rec.GetRetryOffsets(), rec.GetDeadLetteredOffsets()} {
		for _, o := range list {
			out[o] = true
		}
	}
	return out
}

// apply moves a follow along one state record of its partition.
func apply(f *follow, o, ts int64, rec *deliveryv1.StateRecord, trimmedStart bool) {
	if s := rec.GetSnapshot(); s != nil {
		if !f.seen && trimmedStart {
			restore(f, o, ts, s)
		}
		return
	}
	if slices.Contains(rec.GetRedrivenOffsets(), o) {
		f.add(&dmsv1.MessageTraceEvent{Time: msTime(ts), Type: evRedriven, Detail: "given back from the dead-letter queue with a fresh delivery count"})
		f.status, f.attempts, f.deadline = dmsv1.GroupTraceStatus_GROUP_TRACE_STATUS_PENDING, 0, 0
		f.redriveMs = append(f.redriveMs, ts)
	}
	if so := rec.SeekOffset; so != nil {
		settled := f.status == dmsv1.GroupTraceStatus_GROUP_TRACE_STATUS_ACKED || f.status == dmsv1.GroupTraceStatus_GROUP_TRACE_STATUS_DEAD_LETTERED
		switch {
		case *so <= o && (settled || f.status != dmsv1.GroupTraceStatus_GROUP_TRACE_STATUS_PENDING):
			f.add(&dmsv1.MessageTraceEvent{Time: msTime(ts), Type: evSeek, Offset: *so, Detail: fmt.Sprintf("the group's position moved to offset %d: the message is delivered again", *so)})
			f.status, f.attempts, f.deadline = dmsv1.GroupTraceStatus_GROUP_TRACE_STATUS_PENDING, 0, 0
		case *so > o && !settled:
			f.add(&dmsv1.MessageTraceEvent{Time: msTime(ts), Type: evSeek, Offset: *so, Detail: fmt.Sprintf("the group's position moved to offset %d: the message is skipped", *so)})
			f.status = dmsv1.GroupTraceStatus_GROUP_TRACE_STATUS_ACKED
		}
	}
	if slices.Contains(rec.GetDeliveredOffsets(), o) {
		f.timedOut(ts)
		f.attempts++
		f.status, f.deadline = dmsv1.GroupTraceStatus_GROUP_TRACE_STATUS_IN_FLIGHT, rec.GetVisibleAtMs()
		f.add(&dmsv1.MessageTraceEvent{Time: msTime(ts), Type: evDelivered, Consumer: rec.GetConsumer(), DeliveryCount: f.attempts, AvailableTime: msTime(rec.GetVisibleAtMs())})
	}
	if slices.Contains(rec.GetExtendedOffsets(), o) {
		f.deadline = rec.GetExtendedVisibleAtMs()
		f.add(&dmsv1.MessageTraceEvent{Time: msTime(ts), Type: evExtended, DeliveryCount: f.attempts, AvailableTime: msTime(f.deadline)})
	}
	if slices.Contains(rec.GetAckedOffsets(), o) {
		switch {
		case f.status == dmsv1.GroupTraceStatus_GROUP_TRACE_STATUS_IN_FLIGHT:
			f.add(&dmsv1.MessageTraceEvent{Time: msTime(ts), Type: evAcked, DeliveryCount: f.attempts})
		case trimmedStart && !f.seen:
			f.add(&dmsv1.MessageTraceEvent{Time: msTime(ts), Type: evAcked, Detail: "delivered before the history kept (see HISTORY_TRIMMED)"})
		default:
			// Settled without being in flight: skipped for the group's tag
			// filter (or delivered with auto-ack by a broadcast consumer).
			f.add(&dmsv1.MessageTraceEvent{Time: msTime(ts), Type: evSkipped, Reason: "TAG_FILTER", Detail: "settled without a delivery: its tags do not match the group's filter"})
		}
		f.status, f.deadline = dmsv1.GroupTraceStatus_GROUP_TRACE_STATUS_ACKED, 0
	}
	if slices.Contains(rec.GetFailedOffsets(), o) {
		// A failure recorded at or after the deadline is the timeout,
		// found when the group next looked; the consumer's own fail
		// comes before it (a late one is refused).
		if !f.timedOut(ts) {
			f.add(&dmsv1.MessageTraceEvent{Time: msTime(ts), Type: evFailed, Reason: reasonFailed, DeliveryCount: f.attempts})
		}
		f.status, f.deadline = dmsv1.GroupTraceStatus_GROUP_TRACE_STATUS_PENDING, 0
	}
	if slices.Contains(rec.GetRetryOffsets(), o) {
		if !f.timedOut(ts) {
			f.add(&dmsv1.MessageTraceEvent{Time: msTime(ts), Type: evRedeliver, Reason: reasonRedeliver, DeliveryCount: f.attempts, AvailableTime: msTime(rec.GetRetryAtMs())})
		}
		f.status, f.deadline = dmsv1.GroupTraceStatus_GROUP_TRACE_STATUS_RETRYING, 0
	}
	if slices.Contains(rec.GetDeadLetteredOffsets(), o) {
		// The failure that made it a dead letter is not recorded apart;
		// its reason is on the dead letter (addDeadLetter fills it in).
		f.timedOut(ts)
		f.add(&dmsv1.MessageTraceEvent{Time: msTime(ts), Type: evDeadLetter, DeliveryCount: f.attempts})
		f.status, f.deadline, f.deadAtMs = dmsv1.GroupTraceStatus_GROUP_TRACE_STATUS_DEAD_LETTERED, 0, ts
	}
	for _, span := range rec.GetLostOffsets() {
		if span.GetFirst() <= o && o <= span.GetLast() {
			f.add(&dmsv1.MessageTraceEvent{Time: msTime(ts), Type: evSkipped, Reason: "LOST", Detail: "storage lost the message (damaged on disk, no replica had it)"})
			f.status = dmsv1.GroupTraceStatus_GROUP_TRACE_STATUS_ACKED
		}
	}
}

// restore takes a message's state from the checkpoint a trimmed state log
// starts with.
func restore(f *follow, o, ts int64, s *deliveryv1.PartitionSnapshot) {
	detail := "not delivered yet"
	f.status = dmsv1.GroupTraceStatus_GROUP_TRACE_STATUS_PENDING
	settled := o < s.GetAckFloor() && !slices.Contains(s.GetRedriven(), o)
	for _, r := range s.GetAcked() {
		settled = settled || (r.GetFirst() <= o && o <= r.GetLast())
	}
	pending := func(list []*deliveryv1.PendingOffset) *deliveryv1.PendingOffset {
		for _, p := range list {
			if p.GetOffset() == o {
				return p
			}
		}
		return nil
	}
	switch {
	case settled:
		f.status, detail = dmsv1.GroupTraceStatus_GROUP_TRACE_STATUS_ACKED, "settled for the group (acknowledged, dead-lettered or skipped) before this time"
	case pending(s.GetInFlight()) != nil:
		p := pending(s.GetInFlight())
		f.status, f.attempts, f.deadline = dmsv1.GroupTraceStatus_GROUP_TRACE_STATUS_IN_FLIGHT, p.GetAttempts(), p.GetAvailableAtMs()
		detail = fmt.Sprintf("in flight, delivery %d", p.GetAttempts())
	case pending(s.GetRetrying()) != nil:
		p := pending(s.GetRetrying())
		f.status, f.attempts = dmsv1.GroupTraceStatus_GROUP_TRACE_STATUS_RETRYING, p.GetAttempts()
		detail = fmt.Sprintf("waiting for a retry after %d deliveries", p.GetAttempts())
	case pending(s.GetAttempted()) != nil:
		f.attempts = pending(s.GetAttempted()).GetAttempts()
		detail = fmt.Sprintf("available again after %d deliveries", f.attempts)
	}
	f.add(&dmsv1.MessageTraceEvent{Time: msTime(ts), Type: evTrimmed, DeliveryCount: f.attempts,
		Detail: "earlier history compacted into a checkpoint; state then: " + detail})
}

// readState calls fn with every record of a delivery-state log.
func (e *Engine) readState(ctx context.Context, log logid.ID, fn func(startOffset, offset, ts int64, rec *deliveryv1.StateRecord)) error {
	for offset := int64(0); ; {
		resp, err := e.storage.Read(ctx, &storagev1.ReadRequest{Log: log, Offset: offset, MaxBytes: 4 << 20})
		if err != nil {
			return err
		}
		if lost := resp.GetLost(); lost != nil && len(resp.GetRecords()) == 0 {
			offset = lost.GetLastOffset() + 1
			continue
		}
		for _, r := range resp.GetRecords() {
			offset = r.GetOffset() + 1
			rec := &deliveryv1.StateRecord{}
			if proto.Unmarshal(r.GetRecord().GetPayload(), rec) != nil {
				continue // the delivery role skips it too
			}
			fn(resp.GetStartOffset(), r.GetOffset(), r.GetRecord().GetTimestampMs(), rec)
		}
		if len(resp.GetRecords()) == 0 || offset >= resp.GetNextOffset() {
			return nil
		}
	}
}

// addDeadLetter finds a dead-lettered message in the group's dead-letter
// queue: the reason of its last failure, its offset there, and what
// happened to it there.
func (e *Engine) addDeadLetter(ctx context.Context, q *metadatav1.QueueRecord, g *metadatav1.GroupRecord, f *follow, pos position) error {
	dlLog := logid.DeadLetters(q.GetId(), g.GetId())
	var dlOffsets []int64
	var dead []*storagev1.StoredRecord
	// Each dead-lettering wrote one dead letter, a little before the
	// state record that says so.
	err := e.scanLog(ctx, dlLog, func(r *storagev1.StoredRecord) bool {
		d := r.GetRecord().GetDeadLetter()
		if d.GetSourcePartition() == pos.partition && d.GetSourceOffset() == pos.offset {
			dead = append(dead, r)
			dlOffsets = append(dlOffsets, r.GetOffset())
		}
		return true
	})
	if err != nil {
		return err
	}
	// Fill in the reasons of the DEAD_LETTERED events, in order.
	i := 0
	var withDeadLetter []*dmsv1.MessageTraceEvent
	for _, ev := range f.trace.GetEvents() {
		if ev.GetType() == evDeadLetter && ev.GetGroup() == f.group {
			withDeadLetter = append(withDeadLetter, ev)
		}
	}
	for _, ev := range withDeadLetter {
		if i >= len(dead) {
			break
		}
		d := dead[i].GetRecord().GetDeadLetter()
		ev.Reason, ev.Offset = d.GetLastFailureReason(), dead[i].GetOffset()
		ev.Detail = fmt.Sprintf("moved to the dead-letter queue (offset %d) after %d failed deliveries", dead[i].GetOffset(), d.GetFailureCount())
		if d.GetLastFailureReason() == reasonFailed {
			// The consumer's fail that made it one.
			f.trace.Events = append(f.trace.Events, &dmsv1.MessageTraceEvent{Time: ev.GetTime(), Type: evFailed, Group: f.group, Reason: reasonFailed, DeliveryCount: d.GetFailureCount()})
			// Keep FAILED before DEAD_LETTERED at the same millisecond.
			moveBefore(f.trace, len(f.trace.Events)-1, ev)
		}
		i++
	}
	if len(dlOffsets) == 0 {
		return nil
	}
	return e.readState(ctx, logid.DeadLetterState(q.GetId(), g.GetId()), func(_, _, ts int64, rec *deliveryv1.StateRecord) {
		for _, o := range dlOffsets {
			if slices.Contains(rec.GetDeliveredOffsets(), o) {
				f.add(&dmsv1.MessageTraceEvent{Time: msTime(ts), Type: evDLDelivered, Consumer: rec.GetConsumer(), Offset: o, AvailableTime: msTime(rec.GetVisibleAtMs())})
			}
			if slices.Contains(rec.GetAckedOffsets(), o) && !redrivenAround(f.redriveMs, ts) {
				f.add(&dmsv1.MessageTraceEvent{Time: msTime(ts), Type: evDLAcked, Offset: o, Detail: "acknowledged in the dead-letter queue: gone for the group"})
			}
		}
	})
}

// redrivenAround reports whether a dead letter's ack at ts is a redrive's
// removal of it, which the group's log wrote just before.
func redrivenAround(redrives []int64, ts int64) bool {
	for _, r := range redrives {
		if r <= ts && ts-r <= (5*time.Second).Milliseconds() {
			return true
		}
	}
	return false
}

// moveBefore moves events[i] to just before ev.
func moveBefore(t *dmsv1.MessageTrace, i int, ev *dmsv1.MessageTraceEvent) {
	moved := t.Events[i]
	t.Events = slices.Delete(t.Events, i, i+1)
	at := slices.Index(t.Events, ev)
	t.Events = slices.Insert(t.Events, at, moved)
}

// scanLog calls fn with each record of a log, up to scanBytes.
func (e *Engine) scanLog(ctx context.Context, log logid.ID, fn func(*storagev1.StoredRecord) bool) error {
	read := 0
	for offset := int64(0); read < scanBytes; {
		resp, err := e.storage.Read(ctx, &storagev1.ReadRequest{Log: log, Offset: offset, MaxBytes: readBytes})
		if err != nil {
			return err
		}
		if lost := resp.GetLost(); lost != nil && len(resp.GetRecords()) == 0 {
			offset = lost.GetLastOffset() + 1
			continue
		}
		for _, r := range resp.GetRecords() {
			offset = r.GetOffset() + 1
			read += proto.Size(r)
			if !fn(r) {
				return nil
			}
		}
		if len(resp.GetRecords()) == 0 || offset >= resp.GetNextOffset() {
			return nil
		}
	}
	return nil
}
