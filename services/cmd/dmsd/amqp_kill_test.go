package main_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
)

// startAMQP starts the binary with its AMQP listener on amqpAddr, the same
// across restarts.
func (d *dmsd) startAMQP(t *testing.T, amqpAddr string) {
	d.httpAddr = freeAddr(t)
	d.cmd = exec.Command(d.bin, "-data-dir", d.dataDir, "-http-addr", d.httpAddr, "-grpc-addr", freeAddr(t), "-kafka.addr", "", "-amqp.addr", amqpAddr, "-log.level", "warn")
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

// TestKillNineKeepsConfirmedAMQPMessages kills dmsd with SIGKILL while an
// amqp091-go publisher with confirms runs and a consumer holds unacked
// deliveries: after the restart every message whose confirm the publisher
// got is there, and the deliveries that were unacked come back with
// redelivered set.
func TestKillNineKeepsConfirmedAMQPMessages(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills dmsd")
	}
	bin := filepath.Join(t.TempDir(), "dmsd")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	require.NoError(t, build.Run())
	d := &dmsd{bin: bin, dataDir: t.TempDir()}
	addr := freeAddr(t)
	d.startAMQP(t, addr)
	t.Cleanup(func() { _ = d.cmd.Process.Kill() })
	url := "amqp://guest:guest@" + addr + "/"

	conn, err := amqp091.Dial(url)
	require.NoError(t, err)
	ch, err := conn.Channel()
	require.NoError(t, err)
	_, err = ch.QueueDeclare("crash", true, false, false, false, amqp091.Table{"x-queue-type": "quorum"})
	require.NoError(t, err)

	// A consumer takes three messages and holds them unacked; it acks a
	// fourth and makes a synchronous call, so that the state log holding the
	// three deliveries is on disk (an ack's write covers the deliveries
	// recorded before it).
	holder, err := conn.Channel()
	require.NoError(t, err)
	require.NoError(t, ch.Confirm(false))
	for i := range 4 {
		conf, err := ch.PublishWithDeferredConfirmWithContext(context.Background(), "", "crash", false, false, amqp091.Publishing{DeliveryMode: 2, Body: fmt.Appendf(nil, "held-%d", i)})
		require.NoError(t, err)
		require.True(t, conf.Wait())
	}
	require.NoError(t, holder.Qos(4, 0, false))
	deliveries, err := holder.Consume("crash", "", false, false, false, false, nil)
	require.NoError(t, err)
	held := map[string]bool{}
	for i := range 4 {
		dl := <-deliveries
		if i == 3 {
			require.NoError(t, dl.Ack(false))
			continue
		}
		held[string(dl.Body)] = true
	}
	_, err = holder.QueueDeclarePassive("crash", true, false, false, false, nil)
	require.NoError(t, err)

	// The publisher runs until the connection breaks.
	var mu sync.Mutex
	confirmed := map[string]bool{}
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		for i := 0; ; i++ {
			body := fmt.Sprintf("m-%d", i)
			conf, err := ch.PublishWithDeferredConfirmWithContext(context.Background(), "", "crash", false, false, amqp091.Publishing{DeliveryMode: 2, Body: []byte(body)})
			if err != nil {
				return
			}
			ok, err := conf.WaitContext(context.Background())
			if err != nil || !ok {
				return
			}
			mu.Lock()
			confirmed[body] = true
			mu.Unlock()
		}
	}()
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(confirmed) >= 200
	}, 60*time.Second, 10*time.Millisecond)
	d.kill(t)
	<-pubDone
	_ = conn.Close()
	mu.Lock()
	want := len(confirmed)
	mu.Unlock()

	d.startAMQP(t, addr)
	conn, err = amqp091.Dial(url)
	require.NoError(t, err)
	defer conn.Close()
	ch, err = conn.Channel()
	require.NoError(t, err)
	require.NoError(t, ch.Qos(100, 0, false))
	deliveries, err = ch.Consume("crash", "", false, false, false, false, nil)
	require.NoError(t, err)
	got := map[string]bool{}
	redelivered := map[string]bool{}
	// The held deliveries come back when their lease ends (15 s at most).
	deadline := time.After(2 * time.Minute)
	for len(redelivered) < len(held) || countIn(got, confirmed) < want {
		select {
		case dl := <-deliveries:
			got[string(dl.Body)] = true
			if held[string(dl.Body)] {
				require.True(t, dl.Redelivered, "%s was delivered before the kill", dl.Body)
				redelivered[string(dl.Body)] = true
			}
			require.NoError(t, dl.Ack(false))
		case <-deadline:
			t.Fatalf("after the restart: %d of %d confirmed messages, %d of %d held deliveries", countIn(got, confirmed), want, len(redelivered), len(held))
		}
	}
}

func countIn(got, want map[string]bool) int {
	n := 0
	for k := range want {
		if got[k] {
			n++
		}
	}
	return n
}
