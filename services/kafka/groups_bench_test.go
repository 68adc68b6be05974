package kafka_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// BenchmarkOffsetCommit commits the offsets of ten partitions per op
// through one connection: each commit is durable (fsynced in the delivery
// shard's log) before its answer, as Kafka's acks=all commit is.
//
//	go test -run x -bench BenchmarkOffsetCommit -benchtime 3s ./kafka/
func BenchmarkOffsetCommit(b *testing.B) {
	srv := startServer(b, groupFlags...)
	createTopic(b, srv, "orders", 10)
	c := dialRaw(b, srv.KafkaAddr)
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Version, req.Group, req.Generation = 8, "bench", -1
	t := kmsg.NewOffsetCommitRequestTopic()
	t.Topic = "orders"
	for p := range int32(10) {
		tp := kmsg.NewOffsetCommitRequestTopicPartition()
		tp.Partition = p
		t.Partitions = append(t.Partitions, tp)
	}
	req.Topics = []kmsg.OffsetCommitRequestTopic{t}
	b.ResetTimer()
	for i := range b.N {
		for p := range t.Partitions {
			req.Topics[0].Partitions[p].Offset = int64(i)
		}
		resp := c.roundTrip(req).(*kmsg.OffsetCommitResponse)
		if code := resp.Topics[0].Partitions[0].ErrorCode; code != 0 {
			b.Fatalf("commit: error %d", code)
		}
	}
}

// BenchmarkJoinSyncLeave measures a whole membership: a member joins a
// group of its own (JoinGroup v3, so without the MEMBER_ID_REQUIRED round),
// leads it, syncs its assignment (durable) and leaves (durable: the group
// is written empty).
//
//	go test -run x -bench BenchmarkJoinSyncLeave -benchtime 3s ./kafka/
func BenchmarkJoinSyncLeave(b *testing.B) {
	srv := startServer(b, "-kafka.group-initial-rebalance-delay=0")
	c := dialRaw(b, srv.KafkaAddr)
	b.ResetTimer()
	for i := range b.N {
		group := fmt.Sprintf("g%d", i%64)
		jr := c.roundTrip(joinReq(3, group, "", nil)).(*kmsg.JoinGroupResponse)
		if jr.ErrorCode != 0 {
			b.Fatalf("join: error %d", jr.ErrorCode)
		}
		sync := kmsg.NewPtrSyncGroupRequest()
		sync.Version, sync.Group, sync.MemberID, sync.Generation = 3, group, jr.MemberID, jr.Generation
		sync.GroupAssignment = assignRoundRobin("orders", 4, jr.Members)
		if sr := c.roundTrip(sync).(*kmsg.SyncGroupResponse); sr.ErrorCode != 0 {
			b.Fatalf("sync: error %d", sr.ErrorCode)
		}
		leave := kmsg.NewPtrLeaveGroupRequest()
		leave.Version, leave.Group, leave.MemberID = 2, group, jr.MemberID
		if lr := c.roundTrip(leave).(*kmsg.LeaveGroupResponse); lr.ErrorCode != 0 {
			b.Fatalf("leave: error %d", lr.ErrorCode)
		}
	}
}

// BenchmarkShareConsume measures a franz-go share consumer (KIP-932) over
// the DMS group behind it: each op is one record received (with its 30 s
// lock, durably recorded) and accepted. The records (1 KiB) are produced
// before the timer starts.
//
//	go test -run x -bench BenchmarkShareConsume -benchtime 20000x ./kafka/
func BenchmarkShareConsume(b *testing.B) {
	srv := startServer(b)
	createTopic(b, srv, "jobs", 4)
	value := make([]byte, 1024)
	producer := newClient(b, srv.KafkaAddr, kgo.DefaultProduceTopic("jobs"))
	for i := 0; i < b.N; i += 500 {
		var recs []*kgo.Record
		for j := i; j < min(b.N, i+500); j++ {
			recs = append(recs, &kgo.Record{Value: value})
		}
		if err := producer.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
			b.Fatal(err)
		}
	}
	cl := newClient(b, srv.KafkaAddr, kgo.ShareGroup("bench"), kgo.ConsumeTopics("jobs"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	b.SetBytes(1024)
	b.ResetTimer()
	for got := 0; got < b.N; {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			b.Fatalf("%d of %d records", got, b.N)
		}
		got += len(fs.Records())
	}
	b.StopTimer()
	cl.Close() // accepts what the last poll returned
}

// BenchmarkGroupConsume is BenchmarkShareConsume's workload read by a
// classic consumer group member instead (Fetch of the stored batches,
// offsets committed on close): the price of per-record state is the
// difference.
//
//	go test -run x -bench BenchmarkGroupConsume -benchtime 20000x ./kafka/
func BenchmarkGroupConsume(b *testing.B) {
	srv := startServer(b, groupFlags...)
	createTopic(b, srv, "jobs", 4)
	value := make([]byte, 1024)
	producer := newClient(b, srv.KafkaAddr, kgo.DefaultProduceTopic("jobs"))
	for i := 0; i < b.N; i += 500 {
		var recs []*kgo.Record
		for j := i; j < min(b.N, i+500); j++ {
			recs = append(recs, &kgo.Record{Value: value})
		}
		if err := producer.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
			b.Fatal(err)
		}
	}
	cl := newClient(b, srv.KafkaAddr, kgo.ConsumerGroup("bench"), kgo.ConsumeTopics("jobs"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	b.SetBytes(1024)
	b.ResetTimer()
	for got := 0; got < b.N; {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			b.Fatalf("%d of %d records", got, b.N)
		}
		got += len(fs.Records())
	}
	b.StopTimer()
	cl.Close()
}
