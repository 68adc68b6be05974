package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/rpcstatus"
	"github.com/opendms/dms/services/testserver"
)

// BrowseMessages reads every message of a queue by partition and offset,
// by time, by tag, attribute and id, a page at a time, and consumes
// nothing: the group's counts stay as they were.
func TestBrowseMessages(t *testing.T) {
	s := testserver.Start(t)
	ctx := context.Background()
	q := s.CreateQueue(t, "p", &dmsv1.Queue{DisplayName: "orders", PartitionCount: 3})
	g := s.CreateGroup(t, q, "billing")
	var msgs []*dmsv1.Message
	for i := range 30 {
		m := &dmsv1.Message{Body: fmt.Appendf(nil, "m%02d", i), Attributes: map[string]*dmsv1.AttributeValue{
			"n": {Kind: &dmsv1.AttributeValue_IntValue{IntValue: int64(i % 5)}}}}
		if i%3 == 0 {
			m.Tags = []string{"three"}
		}
		msgs = append(msgs, m)
	}
	sent, err := s.Producer().SendMessages(ctx, &dmsv1.SendMessagesRequest{Queue: q.GetName(), Messages: msgs})
	if err != nil {
		t.Fatal(err)
	}
	browse := func(req *dmsv1.BrowseMessagesRequest) *dmsv1.BrowseMessagesResponse {
		t.Helper()
		req.Queue = q.GetName()
		resp, err := s.Queues().BrowseMessages(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	all := browse(&dmsv1.BrowseMessagesRequest{})
	if len(all.GetMessages()) != 30 || all.GetNextPageToken() != "" || len(all.GetPartitions()) != 3 {
		t.Fatalf("browse all: %d messages, token %q, %d partitions", len(all.GetMessages()), all.GetNextPageToken(), len(all.GetPartitions()))
	}
	for _, m := range all.GetMessages() {
		if m.GetReceiptHandle() != "" || len(m.GetMessage().GetBody()) == 0 || m.GetMessageId() == "" {
			t.Fatalf("browsed message %v", m)
		}
	}
	// Pages of 7 give every message once.
	var paged []string
	req := &dmsv1.BrowseMessagesRequest{Limit: 7}
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("paging does not end")
		}
		resp := browse(req)
		paged = append(paged, testserver.Bodies(resp.GetMessages())...)
		if resp.GetNextPageToken() == "" {
			break
		}
		req = &dmsv1.BrowseMessagesRequest{Limit: 7, PageToken: resp.GetNextPageToken()}
	}
	slices.Sort(paged)
	if want := testserver.Bodies(all.GetMessages()); len(paged) != 30 || !slices.Equal(paged, sortedCopy(want)) {
		t.Fatalf("paged browse gave %v", paged)
	}
	// One partition from an offset.
	p, off := sent.GetResults()[4].GetPartition(), sent.GetResults()[4].GetOffset()
	one := browse(&dmsv1.BrowseMessagesRequest{Partitions: []int32{p}, Offset: off, Limit: 1})
	if len(one.GetMessages()) != 1 || one.GetMessages()[0].GetMessageId() != sent.GetResults()[4].GetMessageId() {
		t.Fatalf("partition %d offset %d: %v", p, off, one.GetMessages())
	}
	// Filters.
	if got := browse(&dmsv1.BrowseMessagesRequest{TagFilter: &dmsv1.TagFilter{Tags: []string{"three"}}}); len(got.GetMessages()) != 10 {
		t.Errorf("tag filter: %d messages, want 10", len(got.GetMessages()))
	}
	if got := browse(&dmsv1.BrowseMessagesRequest{Attributes: []string{"n=2"}}); len(got.GetMessages()) != 6 {
		t.Errorf("attribute n=2: %d messages, want 6", len(got.GetMessages()))
	}
	if got := browse(&dmsv1.BrowseMessagesRequest{MessageIds: []string{sent.GetResults()[7].GetMessageId()}}); len(got.GetMessages()) != 1 || string(got.GetMessages()[0].GetMessage().GetBody()) != "m07" {
		t.Errorf("by id: %v", got.GetMessages())
	}
	if got := browse(&dmsv1.BrowseMessagesRequest{StartTime: timestamppb.New(time.Now().Add(time.Hour))}); len(got.GetMessages()) != 0 {
		t.Errorf("from an hour ahead: %d messages", len(got.GetMessages()))
	}
	if got := browse(&dmsv1.BrowseMessagesRequest{StartTime: timestamppb.New(time.Now().Add(-time.Hour))}); len(got.GetMessages()) != 30 {
		t.Errorf("from an hour ago: %d messages", len(got.GetMessages()))
	}
	// Nothing was consumed.
	gr, err := s.Queues().GetConsumerGroup(ctx, &dmsv1.GetConsumerGroupRequest{Name: g.GetName()})
	if err != nil {
		t.Fatal(err)
	}
	if st := gr.GetGroup().GetStats(); st.GetAvailableMessages() != 30 || st.GetInFlightMessages() != 0 {
		t.Errorf("after browsing, the group has %d available, %d in flight", st.GetAvailableMessages(), st.GetInFlightMessages())
	}
	if got := s.Receive(t, g, 100, 30*time.Second); len(got) != 30 {
		t.Errorf("the group receives %d after browsing, want 30", len(got))
	}
	// Over REST too, as the console calls it.
	resp, err := http.Get("http://" + s.HTTPAddr + "/v1/" + q.GetName() + "/messages:browse?limit=2&tagFilter.tags=three&partitions=" + fmt.Sprint(p))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var rest struct {
		Messages []struct {
			MessageID string `json:"messageId"`
			Partition int32  `json:"partition"`
		} `json:"messages"`
		NextPageToken string `json:"nextPageToken"`
	}
	if err := json.Unmarshal(body, &rest); err != nil || resp.StatusCode != 200 || len(rest.Messages) != 2 || rest.Messages[0].Partition != p {
		t.Errorf("REST browse: %d %s", resp.StatusCode, body)
	}
	// Bad input: exact reasons.
	for _, tc := range []struct {
		req    *dmsv1.BrowseMessagesRequest
		reason string
	}{
		{&dmsv1.BrowseMessagesRequest{Partitions: []int32{3}}, "REQUEST_INVALID"},
		{&dmsv1.BrowseMessagesRequest{Partitions: []int32{1, 1}}, "REQUEST_INVALID"},
		{&dmsv1.BrowseMessagesRequest{Limit: 1001}, "MAX_MESSAGES_INVALID"},
		{&dmsv1.BrowseMessagesRequest{PageToken: "bogus"}, "PAGE_TOKEN_INVALID"},
		{&dmsv1.BrowseMessagesRequest{Attributes: []string{"=x"}}, "ATTRIBUTE_INVALID"},
		{&dmsv1.BrowseMessagesRequest{Offset: -1}, "REQUEST_INVALID"},
	} {
		tc.req.Queue = q.GetName()
		if _, err := s.Queues().BrowseMessages(ctx, tc.req); rpcstatus.Reason(err) != tc.reason {
			t.Errorf("%v: %v, want %s", tc.req, err, tc.reason)
		}
	}
	if _, err := s.Queues().BrowseMessages(ctx, &dmsv1.BrowseMessagesRequest{Queue: "projects/p/queues/nope"}); rpcstatus.Reason(err) != "QUEUE_NOT_FOUND" {
		t.Errorf("unknown queue: %v", err)
	}
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}

// UpdateQueue changes the settings named by its mask and nothing else;
// a mask naming an immutable field is refused and changes nothing.
func TestUpdateQueue(t *testing.T) {
	s := testserver.Start(t)
	ctx := context.Background()
	q := s.CreateQueue(t, "p", &dmsv1.Queue{DisplayName: "orders", Description: "before"})
	resp, err := s.Queues().UpdateQueue(ctx, &dmsv1.UpdateQueueRequest{
		Name:       q.GetName(),
		Queue:      &dmsv1.Queue{Description: "after", DeadLetterEnabled: true, MaxConsumeCount: 2, Retention: durationpb.New(2 * time.Hour)},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"description", "dead_letter_enabled", "max_consume_count"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	got := resp.GetQueue()
	if got.GetDescription() != "after" || !got.GetDeadLetterEnabled() || got.GetMaxConsumeCount() != 2 || got.GetRetention().AsDuration() != q.GetRetention().AsDuration() {
		t.Fatalf("updated queue %v", got)
	}
	for _, tc := range []struct {
		queue  *dmsv1.Queue
		paths  []string
		reason string
	}{
		{&dmsv1.Queue{PartitionCount: 5}, []string{"partition_count"}, "REQUEST_INVALID"},
		{&dmsv1.Queue{Retention: durationpb.New(time.Minute)}, []string{"retention"}, "RETENTION_INVALID"},
		{&dmsv1.Queue{DeadLetterEnabled: true, MaxConsumeCount: 0}, []string{"max_consume_count"}, "MAX_CONSUME_COUNT_INVALID"},
		{&dmsv1.Queue{Description: "<b>"}, []string{"description"}, "DESCRIPTION_INVALID"},
	} {
		if _, err := s.Queues().UpdateQueue(ctx, &dmsv1.UpdateQueueRequest{Name: q.GetName(), Queue: tc.queue, UpdateMask: &fieldmaskpb.FieldMask{Paths: tc.paths}}); rpcstatus.Reason(err) != tc.reason {
			t.Errorf("%v: %v, want %s", tc.paths, err, tc.reason)
		}
	}
	// queue.name alone names the queue too; one naming another queue is refused.
	other := s.CreateQueue(t, "p", &dmsv1.Queue{DisplayName: "other"})
	if _, err := s.Queues().UpdateQueue(ctx, &dmsv1.UpdateQueueRequest{Queue: &dmsv1.Queue{Name: q.GetName(), Description: "after"},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"description"}}}); err != nil {
		t.Errorf("update by queue.name: %v", err)
	}
	if _, err := s.Queues().UpdateQueue(ctx, &dmsv1.UpdateQueueRequest{Name: q.GetName(), Queue: &dmsv1.Queue{Name: other.GetName(), Description: "x"},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"description"}}}); rpcstatus.Reason(err) != "REQUEST_INVALID" {
		t.Errorf("update naming two queues: %v", err)
	}
	after, err := s.Queues().GetQueue(ctx, &dmsv1.GetQueueRequest{Name: q.GetName()})
	if err != nil {
		t.Fatal(err)
	}
	if a := after.GetQueue(); a.GetDescription() != "after" || a.GetMaxConsumeCount() != 2 || a.GetPartitionCount() != 3 {
		t.Errorf("after refused updates: %v", a)
	}
}

// ListDeadLetters lists dead letters with filters without receiving them:
// ReceiveDeadLetters still gets them afterwards.
func TestListDeadLetters(t *testing.T) {
	s := testserver.Start(t)
	ctx := context.Background()
	q := s.CreateQueue(t, "p", &dmsv1.Queue{DisplayName: "orders", PartitionCount: 1, DeadLetterEnabled: true, MaxConsumeCount: 1})
	g := s.CreateGroup(t, q, "billing")
	if _, err := s.Producer().SendMessages(ctx, &dmsv1.SendMessagesRequest{Queue: q.GetName(), Messages: []*dmsv1.Message{
		{Body: []byte("a"), Tags: []string{"x"}}, {Body: []byte("b")}, {Body: []byte("c"), Attributes: map[string]*dmsv1.AttributeValue{"k": {Kind: &dmsv1.AttributeValue_StringValue{StringValue: "v"}}}},
	}}); err != nil {
		t.Fatal(err)
	}
	got := s.Receive(t, g, 10, 30*time.Second)
	s.Ack(t, g, dmsv1.AckStatus_ACK_STATUS_FAIL, got...)
	list := func(req *dmsv1.ListDeadLettersRequest) []*dmsv1.ReceivedMessage {
		t.Helper()
		req.Group = g.GetName()
		resp, err := s.Consumer().ListDeadLetters(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetMessages()
	}
	var all []*dmsv1.ReceivedMessage
	deadline := time.Now().Add(30 * time.Second)
	for len(all) < 3 && time.Now().Before(deadline) {
		all = list(&dmsv1.ListDeadLettersRequest{})
		time.Sleep(50 * time.Millisecond)
	}
	if len(all) != 3 || all[0].GetDeadLetter().GetLastFailureReason() != "FAILED_BY_CONSUMER" || all[0].GetReceiptHandle() != "" {
		t.Fatalf("dead letters: %v", all)
	}
	if n := len(list(&dmsv1.ListDeadLettersRequest{TagFilter: &dmsv1.TagFilter{Tags: []string{"x"}}})); n != 1 {
		t.Errorf("tag x: %d", n)
	}
	if n := len(list(&dmsv1.ListDeadLettersRequest{Attributes: []string{"k=v"}})); n != 1 {
		t.Errorf("k=v: %d", n)
	}
	if n := len(list(&dmsv1.ListDeadLettersRequest{FailureReason: "VISIBILITY_TIMEOUT"})); n != 0 {
		t.Errorf("VISIBILITY_TIMEOUT: %d", n)
	}
	if n := len(list(&dmsv1.ListDeadLettersRequest{StartTime: timestamppb.New(time.Now().Add(time.Hour))})); n != 0 {
		t.Errorf("an hour ahead: %d", n)
	}
	page := list(&dmsv1.ListDeadLettersRequest{Limit: 2})
	if len(page) != 2 {
		t.Errorf("limit 2: %d", len(page))
	}
	if _, err := s.Consumer().ListDeadLetters(ctx, &dmsv1.ListDeadLettersRequest{Group: g.GetName(), FailureReason: "BAD"}); rpcstatus.Reason(err) != "REQUEST_INVALID" {
		t.Errorf("bad reason: %v", err)
	}
	// Listing received nothing.
	dl, err := s.Consumer().ReceiveDeadLetters(ctx, &dmsv1.ReceiveDeadLettersRequest{Group: g.GetName(), MaxMessages: 10})
	if err != nil || len(dl.GetMessages()) != 3 {
		t.Fatalf("receive dead letters after listing: %d, %v", len(dl.GetMessages()), err)
	}
	// A settled dead letter is no longer listed.
	if _, err := s.Consumer().AckDeadLetters(ctx, &dmsv1.AckDeadLettersRequest{Group: g.GetName(), Acks: []*dmsv1.Ack{{ReceiptHandle: dl.GetMessages()[0].GetReceiptHandle()}}}); err != nil {
		t.Fatal(err)
	}
	if n := len(list(&dmsv1.ListDeadLettersRequest{})); n != 2 {
		t.Errorf("after one ack: %d listed, want 2", n)
	}
}

// GetClusterStatus of a single node: the node, alive and controller, and
// each partition led by it with its high watermark.
func TestClusterStatus(t *testing.T) {
	s := testserver.Start(t)
	ctx := context.Background()
	q := s.CreateQueue(t, "p", &dmsv1.Queue{DisplayName: "orders", PartitionCount: 2})
	s.Send(t, q, "a", "b", "c", "d")
	cs := dmsv1.NewClusterServiceClient(s.Conn)
	st, err := cs.GetClusterStatus(ctx, &dmsv1.GetClusterStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(st.GetNodes()) != 1 || !st.GetNodes()[0].GetAlive() || st.GetNodes()[0].GetName() != s.NodeName || st.GetClusterId() == "" {
		t.Fatalf("nodes: %v", st.GetNodes())
	}
	if len(st.GetShards()) == 0 || st.GetUnderReplicatedCount() != 0 || st.GetOfflineCount() != 0 {
		t.Errorf("shards %d, under-replicated %d, offline %d", len(st.GetShards()), st.GetUnderReplicatedCount(), st.GetOfflineCount())
	}
	one, err := cs.GetClusterStatus(ctx, &dmsv1.GetClusterStatusRequest{Queue: "projects/p/queues/orders"})
	if err != nil {
		t.Fatal(err)
	}
	var hw int64
	for i, p := range one.GetPartitions() {
		if p.GetPartition() != int32(i) || p.GetReplication().GetLeader() != s.NodeName || p.GetQueueDisplayName() != "orders" || p.GetReplication().GetUnderReplicated() {
			t.Errorf("partition %v", p)
		}
		hw += p.GetHighWatermark()
	}
	if len(one.GetPartitions()) != 2 || hw != 4 || len(one.GetShards()) != 0 {
		t.Errorf("queue status: %d partitions, %d messages in all, %d shards", len(one.GetPartitions()), hw, len(one.GetShards()))
	}
	if _, err := cs.GetClusterStatus(ctx, &dmsv1.GetClusterStatusRequest{Queue: "projects/p/queues/nope"}); rpcstatus.Reason(err) != "QUEUE_NOT_FOUND" {
		t.Errorf("unknown queue: %v", err)
	}
}

// On three nodes: the cluster status from any node lists the three, each
// partition with three in-sync replicas and its high watermark; a browse
// through a node that leads nothing reads every message from the leaders;
// once a node stops, it is listed as not alive and its partitions as
// under-replicated.
func TestOperatorAPIsAcrossNodes(t *testing.T) {
	_, nodes := startCluster(t, 3)
	ctx := context.Background()
	q := nodes[0].CreateQueue(t, "p", &dmsv1.Queue{DisplayName: "orders", PartitionCount: 3})
	nodes[0].Send(t, q, "a", "b", "c", "d", "e", "f")
	status := func(s *testserver.Server) *dmsv1.GetClusterStatusResponse {
		t.Helper()
		st, err := dmsv1.NewClusterServiceClient(s.Conn).GetClusterStatus(ctx, &dmsv1.GetClusterStatusRequest{Queue: q.GetName()})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	st := status(nodes[2])
	var hw int64
	for _, p := range st.GetPartitions() {
		if r := p.GetReplication(); len(r.GetReplicas()) != 3 || len(r.GetIsr()) != 3 || r.GetUnderReplicated() || r.GetLeader() == "" {
			t.Errorf("partition %d: %v", p.GetPartition(), r)
		}
		hw += p.GetHighWatermark()
	}
	if len(st.GetNodes()) != 3 || hw != 6 || st.GetController() == "" {
		t.Fatalf("status: %d nodes, %d messages, controller %q", len(st.GetNodes()), hw, st.GetController())
	}
	for _, n := range nodes {
		resp, err := n.Queues().BrowseMessages(ctx, &dmsv1.BrowseMessagesRequest{Queue: q.GetName()})
		if err != nil || len(resp.GetMessages()) != 6 {
			t.Errorf("browse through %s: %d messages, %v", n.NodeName, len(resp.GetMessages()), err)
		}
	}
	nodes[2].Server.Stop()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st = status(nodes[0])
		under := 0
		for _, p := range st.GetPartitions() {
			if p.GetReplication().GetUnderReplicated() {
				under++
			}
		}
		dead := slices.ContainsFunc(st.GetNodes(), func(n *dmsv1.ClusterNode) bool { return n.GetName() == "node3" && !n.GetAlive() })
		if dead && under == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after node3 stopped: nodes %v, %d partitions under-replicated", st.GetNodes(), under)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if st.GetUnderReplicatedCount() < 3 {
		t.Errorf("under_replicated_count %d", st.GetUnderReplicatedCount())
	}
}
