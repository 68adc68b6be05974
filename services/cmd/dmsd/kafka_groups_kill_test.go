package main_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// startKafka starts the binary with its Kafka listener on kafkaAddr, the
// same across restarts so that clients find it again.
func (d *dmsd) startKafka(t *testing.T, kafkaAddr string) {
	d.httpAddr = freeAddr(t)
	d.cmd = exec.Command(d.bin, "-data-dir", d.dataDir, "-http-addr", d.httpAddr, "-grpc-addr", freeAddr(t), "-kafka.addr", kafkaAddr, "-amqp.addr", "127.0.0.1:0",
		"-kafka.group-initial-rebalance-delay", "100ms", "-log.level", "warn")
	d.cmd.Stdout, d.cmd.Stderr = os.Stderr, os.Stderr
	require.NoError(t, d.cmd.Start())
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + d.httpAddr + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 20*time.Millisecond, "dmsd did not become healthy")
}

// TestKillNineKeepsCommittedKafkaOffsets runs a franz-go consumer group
// that commits synchronously after each poll, kills dmsd with SIGKILL in
// the middle of it, restarts it and checks that every commit the client
// was told succeeded holds, and that a consumer of the group resumes there:
// every produced record is consumed, before or after the kill.
func TestKillNineKeepsCommittedKafkaOffsets(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills dmsd")
	}
	bin := t.TempDir() + "/dmsd"
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	require.NoError(t, build.Run())
	d := &dmsd{bin: bin, dataDir: t.TempDir()}
	kafkaAddr := freeAddr(t)
	d.startKafka(t, kafkaAddr)
	t.Cleanup(func() { _ = d.cmd.Process.Kill() })
	ctx := context.Background()

	admCl, err := kgo.NewClient(kgo.SeedBrokers(kafkaAddr))
	require.NoError(t, err)
	adm := kadm.NewClient(admCl)
	created, err := adm.CreateTopic(ctx, 4, 1, nil, "events")
	require.NoError(t, err)
	require.NoError(t, created.Err)
	const total = 400
	producer, err := kgo.NewClient(kgo.SeedBrokers(kafkaAddr), kgo.DefaultProduceTopic("events"))
	require.NoError(t, err)
	for i := range total {
		producer.Produce(ctx, &kgo.Record{Value: fmt.Appendf(nil, "%d", i)}, nil)
	}
	require.NoError(t, producer.Flush(ctx))
	producer.Close()
	admCl.Close()

	var mu sync.Mutex
	seen := map[string]bool{}
	acked := map[int32]int64{} // partition → highest offset whose commit was answered
	consumer, err := kgo.NewClient(kgo.SeedBrokers(kafkaAddr), kgo.ConsumerGroup("readers"), kgo.ConsumeTopics("events"),
		kgo.DisableAutoCommit(), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxPartitionBytes(2000))
	require.NoError(t, err)
	for {
		fs := consumer.PollRecords(ctx, 25)
		var recs []*kgo.Record
		fs.EachRecord(func(r *kgo.Record) { recs = append(recs, r) })
		if err := consumer.CommitRecords(ctx, recs...); err != nil {
			continue
		}
		mu.Lock()
		for _, r := range recs {
			seen[string(r.Value)] = true
			acked[r.Partition] = max(acked[r.Partition], r.Offset+1)
		}
		n := len(seen)
		mu.Unlock()
		if n >= total/2 {
			break
		}
	}
	d.kill(t)
	consumer.Close()

	d.startKafka(t, kafkaAddr)
	admCl, err = kgo.NewClient(kgo.SeedBrokers(kafkaAddr))
	require.NoError(t, err)
	defer admCl.Close()
	adm = kadm.NewClient(admCl)
	var committed kadm.OffsetResponses
	require.Eventually(t, func() bool {
		committed, err = adm.FetchOffsets(ctx, "readers")
		return err == nil && committed.Error() == nil
	}, 30*time.Second, 50*time.Millisecond)
	for p, o := range acked {
		c, ok := committed.Lookup("events", p)
		require.True(t, ok, "partition %d lost its committed offset", p)
		require.GreaterOrEqual(t, c.At, o, "partition %d: a commit answered before the kill was lost", p)
	}

	// A new member resumes at the committed offsets and reads the rest.
	consumer, err = kgo.NewClient(kgo.SeedBrokers(kafkaAddr), kgo.ConsumerGroup("readers"), kgo.ConsumeTopics("events"),
		kgo.DisableAutoCommit(), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	require.NoError(t, err)
	defer consumer.Close()
	pollCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for len(seen) < total {
		fs := consumer.PollFetches(pollCtx)
		require.NoError(t, pollCtx.Err(), "%d of %d records consumed", len(seen), total)
		fs.EachRecord(func(r *kgo.Record) {
			c, _ := committed.Lookup("events", r.Partition)
			require.GreaterOrEqual(t, r.Offset, c.At, "a record before the committed offset was delivered again")
			seen[string(r.Value)] = true
		})
	}
}
