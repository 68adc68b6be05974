package console

import (
	"context"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"google.golang.org/protobuf/types/known/durationpb"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/testserver"
)

const project = "0123456789abcdef0123456789abcdef"

var messageID = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)

// traffic keeps a queue busy through the gRPC API while the test runs, so
// that the console's live charts have something to draw: a producer and a
// consumer group that acks what it receives, at a few hundred messages a
// second.
func traffic(t *testing.T, s *testserver.Server) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	queues, producer, consumer := dmsv1.NewQueueServiceClient(s.Conn), dmsv1.NewProducerServiceClient(s.Conn), dmsv1.NewConsumerServiceClient(s.Conn)
	if _, err := queues.CreateQueue(ctx, &dmsv1.CreateQueueRequest{Parent: "projects/" + project, Queue: &dmsv1.Queue{DisplayName: "events", PartitionCount: 3}}); err != nil {
		t.Fatal(err)
	}
	for _, g := range []string{"analytics", "archive"} {
		if _, err := queues.CreateConsumerGroup(ctx, &dmsv1.CreateConsumerGroupRequest{Parent: "projects/" + project + "/queues/events", Group: &dmsv1.ConsumerGroup{DisplayName: g}}); err != nil {
			t.Fatal(err)
		}
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		batch := make([]*dmsv1.Message, 40)
		for i := range batch {
			batch[i] = &dmsv1.Message{Body: []byte(`{"event":"page_view","n":` + string(rune('0'+i%10)) + `}`), Tags: []string{"web"}}
		}
		for ctx.Err() == nil {
			_, _ = producer.SendMessages(ctx, &dmsv1.SendMessagesRequest{Queue: "projects/" + project + "/queues/events", Messages: batch})
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	go func() {
		defer wg.Done()
		// Slower than the producer: "analytics" builds a backlog, "archive"
		// is never read, so the two lag lines differ.
		for ctx.Err() == nil {
			got, err := consumer.ReceiveMessages(ctx, &dmsv1.ReceiveMessagesRequest{Group: "projects/" + project + "/queues/events/groups/analytics", MaxMessages: 30, WaitTime: durationpb.New(time.Second)})
			if err != nil {
				continue
			}
			var acks []*dmsv1.Ack
			for _, m := range got.GetMessages() {
				acks = append(acks, &dmsv1.Ack{ReceiptHandle: m.GetReceiptHandle()})
			}
			if len(acks) > 0 {
				_, _ = consumer.AckMessages(ctx, &dmsv1.AckMessagesRequest{Group: "projects/" + project + "/queues/events/groups/analytics", Acks: acks})
			}
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
}

// The main flow of the issue, as an operator clicks it: create a queue with
// a group, send a message, receive it and fail it into the dead letters,
// find it there and redrive it, see it back in its group, seek the group,
// and find the calls in the audit log.
func TestConsoleFlow(t *testing.T) {
	s := testserver.Start(t)
	traffic(t, s)
	p := &page{t: t, ctx: browser(t), base: "http://" + s.HTTPAddr + "/console/"}

	// Overview: the busy queue is listed with its rates.
	p.open("/")
	p.waitText(`[data-testid=queues]`, "events", "NORMAL")
	p.waitText(`[data-testid=quotas]`, "groups a queue")

	// Create a queue whose messages become dead letters at the first failure.
	p.click(`[data-testid=create-queue]`)
	p.typeInto(`[data-testid=queue-name]`, "orders")
	p.replace(`[data-testid=queue-max-consume]`, "1")
	p.replace(`[data-testid=queue-group]`, "billing")
	p.click(`[data-testid=create-queue-ok]`)
	p.waitText(`[data-testid=queue-title]`, "orders")
	p.waitText(`[data-testid=groups]`, "billing")

	// Send a JSON message with a tag and an attribute.
	p.typeInto(`[data-testid=send-body]`, `{"order":42,"item":"book"}`)
	p.typeInto(`[data-testid=send-attributes]`, "region=eu")
	p.typeInto(`[data-testid=send-tags] input`, "new"+kb.Enter)
	p.click(`[data-testid=send]`)
	results := p.waitText(`[data-testid=send-results]`, "Message id")
	id := messageID.FindString(results)
	if id == "" {
		t.Fatalf("the send results show no message id:\n%s", results)
	}
	// The page samples the queue: the count changes without a reload.
	p.waitText(`[data-testid=queue-messages]`, "1")

	// Browse it without consuming it: by attribute and tag, the body as
	// JSON; the group's backlog is untouched.
	p.open("/messages?queue=orders")
	p.waitText(`[data-testid=browse-messages]`, id, "region=eu", "new")
	p.typeInto(`[data-testid=browse-attributes] input`, "region=us"+kb.Enter)
	p.click(`[data-testid=browse]`)
	p.waitText(`[data-testid=browse-messages]`, "No data")
	p.click(`[data-testid=browse-attributes] .ant-select-selection-item-remove`)
	p.typeInto(`[data-testid=browse-attributes] input`, "region=eu"+kb.Enter)
	p.typeInto(`[data-testid=browse-tags] input`, "new"+kb.Enter)
	p.click(`[data-testid=browse]`)
	p.waitText(`[data-testid=browse-messages]`, id)
	p.click(`[data-testid=browse-messages] .ant-table-row-expand-icon`)
	p.waitText(`[data-testid=browse-messages]`, `"item": "book"`)
	p.screenshot("browse")
	p.clickText(`[data-testid=browse-messages] .ant-segmented-item`, "Hex")
	p.waitText(`[data-testid=browse-messages] .body-pre`, `00000000  7b 22 6f 72 64 65 72 22`, `{"order":42,"ite`, `m":"book"}`)
	p.open("/queues/orders")
	p.waitText(`[data-testid=groups]`, "billing")
	if got := p.text(`[data-testid=groups] .ant-table-tbody`); !strings.Contains(got, "billing\t1\t0\t0") {
		t.Fatalf("after browsing, billing's lag, in flight and acked should be 1, 0, 0:\n%s", got)
	}

	// Settings: a description (UpdateQueue) and a fourth partition
	// (AddPartitions).
	p.click(`[data-testid=queue-settings]`)
	p.typeInto(`[data-testid=settings-description]`, "orders from the shop")
	p.replace(`[data-testid=settings-partitions]`, "4")
	p.clickText(`.ant-modal button`, "Save")
	p.waitText(`[data-testid=queue-description]`, "orders from the shop")
	waitRows(p, `[data-testid=partitions]`, 4)

	// Receive it as the group's consumer and fail it: with one failure
	// allowed, it becomes a dead letter.
	p.click(`[data-testid=receive]`)
	p.waitText(`[data-testid=received]`, "order", "region=eu")
	p.screenshot("queue")
	p.click(`[data-testid=fail]`)
	p.waitText(`[data-testid=settled]`, "fail")
	p.waitText(`[data-testid=dead-billing]`, "1")

	// Dead letters: the message is there with why it died; redrive it.
	p.open("/deadletters?queue=orders&group=billing")
	p.waitText(`[data-testid=dead-letters]`, id, "FAILED_BY_CONSUMER")
	p.click(`[data-testid=dead-letters] .ant-table-row-expand-icon`) // the body, as JSON
	p.waitText(`[data-testid=dead-letters]`, `"item": "book"`)
	p.click(`[data-testid=dead-letters] .ant-table-tbody .ant-checkbox-input`)
	p.screenshot("dead-letters")
	p.click(`[data-testid=redrive-selected]`)
	got := p.waitText(`[data-testid=redrive-results]`, id, "redriven")
	if strings.Contains(got, "MESSAGE_EXPIRED") {
		t.Fatalf("redrive results: %s", got)
	}
	p.waitText(`[data-testid=dead-available]`, "0")
	p.screenshot("redrive")

	// Back in its group: received again, with a fresh delivery count.
	p.open("/queues/orders")
	p.click(`[data-testid=receive]`)
	p.waitText(`[data-testid=received]`, "order")
	p.click(`[data-testid=ack]`)
	p.waitText(`[data-testid=settled]`, "success")

	// Its trace: produced, delivered, failed, dead-lettered, redriven,
	// delivered again and acked, in one view.
	p.open("/trace?queue=orders&id=" + id)
	p.waitText(`[data-testid=trace-events]`, "PRODUCED", "DELIVERED", "FAILED", "DEAD_LETTERED", "REDRIVEN", "ACKED", "group billing")
	p.waitText(`[data-testid=trace-groups]`, "billing: ACKED")
	p.screenshot("trace")

	// Consumer groups: reset billing to the earliest message.
	p.open("/groups?queue=orders&group=billing")
	p.waitText(`[data-testid=group-list]`, "billing")
	p.click(`[data-testid=seek]`)
	p.clickText(`.ant-popconfirm button`, "OK")
	p.waitText(`[data-testid=seek-positions]`, "New position")
	p.screenshot("groups")

	// Overview, with the busy queue's charts drawn from several samples.
	p.open("/")
	p.waitText(`[data-testid=queues]`, "orders", "events")
	waitPoints(p, `[data-testid=chart-backlog]`, 6)
	p.screenshot("overview")

	// The busy queue's detail: lag per group over time.
	p.open("/queues/events")
	p.waitText(`[data-testid=groups]`, "analytics", "archive")
	waitPoints(p, `[data-testid=chart-lag]`, 10)
	p.screenshot("queue-detail")

	// A message scheduled an hour ahead is counted as scheduled, and
	// cancelled by its schedule id.
	p.open("/queues/orders")
	p.typeInto(`[data-testid=send-body]`, "later")
	p.typeInto(`[data-testid=send-delay]`, "3600")
	p.click(`[data-testid=send]`)
	p.run("wait for the schedule id", chromedp.WaitVisible(chromedp.CSS(`[data-testid=schedule-id]`)))
	scheduleID := strings.TrimSpace(p.text(`[data-testid=schedule-id]`))
	p.waitText(`[data-testid=scheduled-count]`, "1")
	p.typeInto(`[data-testid=cancel-ids]`, scheduleID)
	p.click(`[data-testid=cancel-scheduled]`)
	p.waitText("body", "1 cancelled")
	p.waitText(`[data-testid=scheduled-count]`, "0")

	// The cluster: this node, alive, leading the queues' partitions.
	p.open("/cluster")
	p.waitText(`[data-testid=cluster-nodes]`, s.NodeName, "alive")
	p.waitText(`[data-testid=cluster-partitions]`, "orders", "events", s.NodeName)
	p.screenshot("cluster")

	// The audit log has the calls the page made.
	p.open("/audit")
	p.waitText(`[data-testid=audit-records]`, "CreateQueue", "RedriveDeadLetters", "SeekConsumerGroup")
	p.click(`[data-testid=audit-verify]`)
	p.waitText(`[data-testid=audit-verify-result]`, "Intact")
	p.screenshot("audit")
}

// waitPoints waits until a chart has drawn at least n points: the charts
// are fed by samples the page takes while it is open.
func waitPoints(p *page, sel string, n int) {
	p.t.Helper()
	for {
		points := eval[int](p, `Number(document.querySelector(`+"`"+sel+"`"+`)?.dataset.points ?? 0)`)
		if points >= n {
			return
		}
		select {
		case <-p.ctx.Done():
			p.t.Fatalf("%s drew %d points, never %d", sel, points, n)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// waitRows waits until a table shows n rows.
func waitRows(p *page, sel string, n int) {
	p.t.Helper()
	for {
		rows := eval[int](p, `document.querySelectorAll(`+"`"+sel+` .ant-table-tbody tr.ant-table-row`+"`"+`).length`)
		if rows == n {
			return
		}
		select {
		case <-p.ctx.Done():
			p.t.Fatalf("%s shows %d rows, never %d", sel, rows, n)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
