package kafkaclients_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/require"
)

// builtDmsd is dmsd built from this tree and run as a child process, so that
// a test can kill it with SIGKILL and start it again on the same data
// directory and the same Kafka address, where the clients find it again.
type builtDmsd struct {
	bin, dataDir, kafkaAddr, httpAddr string
	cmd                               *exec.Cmd
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}

func buildDmsd(t *testing.T) *builtDmsd {
	bin := filepath.Join(t.TempDir(), "dmsd")
	build := exec.Command("go", "build", "-o", bin, "./cmd/dmsd")
	build.Dir = "../../services"
	build.Stderr = os.Stderr
	require.NoError(t, build.Run())
	d := &builtDmsd{bin: bin, dataDir: t.TempDir(), kafkaAddr: freeAddr(t)}
	d.start(t)
	t.Cleanup(func() { d.kill(t) })
	return d
}

func (d *builtDmsd) start(t *testing.T) {
	d.httpAddr = freeAddr(t)
	d.cmd = exec.Command(d.bin, "-node.data-dir", d.dataDir, "-server.http-addr", d.httpAddr, "-server.grpc-addr", freeAddr(t),
		"-kafka.addr", d.kafkaAddr, "-amqp.addr", "127.0.0.1:0", "-kafka.group-initial-rebalance-delay", "100ms", "-log.level", "warn")
	d.cmd.Stdout, d.cmd.Stderr = os.Stderr, os.Stderr
	require.NoError(t, d.cmd.Start())
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + d.httpAddr + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 60*time.Second, 20*time.Millisecond, "dmsd did not become healthy")
}

func (d *builtDmsd) kill(t *testing.T) {
	if d.cmd.ProcessState != nil {
		return
	}
	require.NoError(t, d.cmd.Process.Signal(syscall.SIGKILL))
	_ = d.cmd.Wait()
}

// TestSaramaGroupSurvivesKillNine runs sarama's idempotent producer and a
// sarama consumer group while dmsd is killed with SIGKILL and started again
// on the same data directory; the clients carry on by themselves. Every
// produce that was acknowledged is in the topic afterwards and is consumed
// by the group, and the offsets the group had committed before the kill
// (read back through the admin API, so answered by the server) hold: none
// moves back.
func TestSaramaGroupSurvivesKillNine(t *testing.T) {
	d := buildDmsd(t)
	addr := d.kafkaAddr
	const topic, group = "kill-topic", "kill-group"
	_, err := admin(t, addr).CreateTopic(ctxT(t), 3, 1, nil, topic)
	require.NoError(t, err)

	// The producer sends batches of 10 until told to stop, remembering the
	// values of every message that was acknowledged.
	var (
		mu    sync.Mutex
		acked = map[string]bool{}
	)
	stopProducing := make(chan struct{})
	producing := make(chan struct{})
	pc := saramaConfig()
	pc.Producer.Retry.Max = 20
	pc.Producer.Retry.Backoff = 200 * time.Millisecond
	producer, err := sarama.NewSyncProducer([]string{addr}, pc)
	require.NoError(t, err)
	go func() {
		defer close(producing)
		for i := 0; ; i++ {
			select {
			case <-stopProducing:
				return
			default:
			}
			msgs := make([]*sarama.ProducerMessage, 10)
			for j := range msgs {
				msgs[j] = &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(fmt.Sprint(j)), Value: sarama.StringEncoder(fmt.Sprintf("m-%05d-%d", i, j))}
			}
			err := producer.SendMessages(msgs)
			failed := map[*sarama.ProducerMessage]bool{}
			var perrs sarama.ProducerErrors
			if errors.As(err, &perrs) {
				for _, pe := range perrs {
					failed[pe.Msg] = true
				}
			} else if err != nil {
				continue
			}
			mu.Lock()
			for _, m := range msgs {
				if !failed[m] {
					acked[string(m.Value.(sarama.StringEncoder))] = true
				}
			}
			mu.Unlock()
			time.Sleep(5 * time.Millisecond)
		}
	}()

	member, stopMember := joinSarama(t, addr, group, topic)
	require.Eventually(t, func() bool { return len(member.seen()) >= 300 }, 60*time.Second, 20*time.Millisecond)
	require.Eventually(t, func() bool { return sum(committed(t, addr, group, topic)) > 0 }, 30*time.Second, 20*time.Millisecond)
	before := committed(t, addr, group, topic)

	d.kill(t)
	d.start(t)
	after := committed(t, addr, group, topic)
	for p, at := range before {
		require.GreaterOrEqual(t, after[p], at, "partition %d: the commit answered before the kill holds", p)
	}

	// The clients reconnect by themselves and go on.
	seenAtRestart := len(member.seen())
	require.Eventually(t, func() bool { return len(member.seen()) > seenAtRestart+100 }, 60*time.Second, 20*time.Millisecond, "the group consumes again after the restart")
	close(stopProducing)
	<-producing
	require.NoError(t, producer.Close())

	mu.Lock()
	want := len(acked)
	mu.Unlock()
	require.Greater(t, want, 300)
	ends := endOffsets(t, addr, topic)
	stored := map[string]bool{}
	for _, r := range readAll(t, addr, topic, int(sum(ends))) {
		stored[string(r.Value)] = true
	}
	for v := range acked {
		require.True(t, stored[v], "acknowledged %s is stored", v)
	}
	require.Eventually(t, func() bool {
		seen := map[string]bool{}
		for _, v := range member.seen() {
			seen[v] = true
		}
		for v := range stored {
			if !seen[v] {
				return false
			}
		}
		return true
	}, 60*time.Second, 50*time.Millisecond, "the group consumes every stored record")
	stopMember()
	requireCommittedToEnd(t, addr, group, topic)
}

// TestConfluentGroupSurvivesKillNine is the same with librdkafka
// (confluent-kafka-python): its idempotent producer and consumer group run
// in one process while dmsd is killed and restarted; every acknowledged
// record is stored and consumed, and the group's commits end at the end.
func TestConfluentGroupSurvivesKillNine(t *testing.T) {
	python := tool(t, "DMS_KAFKA_PYTHON")
	d := buildDmsd(t)
	addr := d.kafkaAddr
	const topic, group = "kill-confluent", "kill-confluent-group"
	_, err := admin(t, addr).CreateTopic(ctxT(t), 3, 1, nil, topic)
	require.NoError(t, err)

	cmd := exec.Command(python, "python/clients.py", "confluent", "soak", "--bootstrap", addr, "--topic", topic, "--group", group, "--seconds", "8")
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Start())
	// Kill once the group has committed something.
	require.Eventually(t, func() bool { return sum(committed(t, addr, group, topic)) > 0 }, 60*time.Second, 50*time.Millisecond)
	before := committed(t, addr, group, topic)
	d.kill(t)
	d.start(t)
	after := committed(t, addr, group, topic)
	for p, at := range before {
		require.GreaterOrEqual(t, after[p], at, "partition %d: the commit answered before the kill holds", p)
	}
	require.NoError(t, cmd.Wait(), "stderr:\n%s", stderr.String())

	var res struct{ Acked, Consumed, Errors []string }
	require.NoError(t, json.Unmarshal([]byte(stdout.String()), &res), "%s", stdout.String())
	t.Logf("%d acknowledged, %d consumed; client errors: %v", len(res.Acked), len(res.Consumed), res.Errors)
	require.NotEmpty(t, res.Acked)
	stored := map[string]bool{}
	for _, r := range readAll(t, addr, topic, int(sum(endOffsets(t, addr, topic)))) {
		require.False(t, stored[string(r.Value)], "%s stored twice (idempotence)", r.Value)
		stored[string(r.Value)] = true
	}
	consumed := map[string]bool{}
	for _, v := range res.Consumed {
		consumed[v] = true
	}
	for _, v := range res.Acked {
		require.True(t, stored[v], "acknowledged %s is stored", v)
		require.True(t, consumed[v], "acknowledged %s is consumed", v)
	}
	requireCommittedToEnd(t, addr, group, topic)
}
