package dms_test

import (
	"slices"
	"testing"
	"time"

	dms "github.com/opendms/dms/sdk/go"
)

func TestScheduledMessages(t *testing.T) {
	ctx := ctxTimeout(t, 30*time.Second)
	p := newProject(t)
	q := newQueue(t, p, dms.QueueConfig{Partitions: 1})
	results, err := p.Send(ctx, q,
		dms.Message{Body: []byte("soon"), Delay: 1500 * time.Millisecond},
		dms.Message{Body: []byte("cancelled"), Delay: time.Hour},
		dms.Message{Body: []byte("moved"), DeliverTime: time.Now().Add(time.Hour)},
		dms.Message{Body: []byte("now")},
	)
	if err != nil {
		t.Fatal(err)
	}
	if results[0].ScheduleID == "" {
		t.Skip("this dmsd does not schedule messages yet (no schedule id in the send result)")
	}
	if results[3].ScheduleID != "" || results[2].DeliverTime.Before(time.Now().Add(59*time.Minute)) {
		t.Fatalf("send results %+v", results)
	}
	if got := receiveAll(t, p, q, "g", 4, dms.ReceiveOptions{}); !slices.Equal(bodies(got), []string{"now"}) {
		t.Fatalf("before any schedule is due: %v", bodies(got))
	}

	cancelled, err := p.CancelScheduledMessages(ctx, q, results[1].ScheduleID, "garbage")
	if err != nil {
		t.Fatal(err)
	}
	if !cancelled[0].Cancelled || cancelled[1].Cancelled || cancelled[1].Reason == "" {
		t.Fatalf("cancel results %+v", cancelled)
	}
	moved, err := p.RescheduleMessage(ctx, q, results[2].ScheduleID, dms.RescheduleOptions{Delay: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if moved.MessageID != results[2].MessageID || moved.ScheduleID == results[2].ScheduleID || time.Until(moved.DeliverTime) > time.Minute {
		t.Fatalf("reschedule result %+v", moved)
	}
	if _, err := p.RescheduleMessage(ctx, q, results[2].ScheduleID, dms.RescheduleOptions{}); dms.ReasonOf(err) != dms.ReasonScheduleNotFound {
		t.Fatalf("reschedule by a replaced schedule id: %v", err)
	}

	var got []string
	eventually(t, 10*time.Second, func() bool {
		for _, m := range receiveAll(t, p, q, "g", 4, dms.ReceiveOptions{}) {
			got = append(got, string(m.Body))
		}
		return len(got) >= 2
	}, "the due messages were not released: got %v", &got)
	slices.Sort(got)
	if !slices.Equal(got, []string{"moved", "soon"}) {
		t.Fatalf("released %v", got)
	}
	late, err := p.CancelScheduledMessages(ctx, q, results[0].ScheduleID)
	if err != nil {
		t.Fatal(err)
	}
	if late[0].Cancelled || (late[0].Reason != dms.ReasonScheduleAlreadyReleased && late[0].Reason != dms.ReasonScheduleNotFound) {
		t.Fatalf("cancel of a released message: %+v", late[0])
	}
}
