package faulttest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
)

// TestRollingUpgrade runs the README's node-by-node upgrade on a cluster of
// deploy/local-cluster.sh (3 nodes, replication factor 3, its own etcd)
// under a steady load through every node: `local-cluster.sh upgrade` puts a
// new dmsd in place and restarts each node in turn, the next only once the
// last answers /readyz (caught up). `make rolling-upgrade-test`
// (ROLLING_NODES=3) runs that; the default go test restarts one node the
// same way (`local-cluster.sh restart node2`), its short form. It fails on any acknowledged message
// lost or stored twice, on a message delivered again after its ack was
// answered, and on a restart during which no send was acknowledged; it
// reports the longest time without any acknowledged send and the longest a
// send took to be acknowledged (retries through other nodes included).
func TestRollingUpgrade(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a cluster of dmsd processes")
	}
	bin := BuildDMSD(t)
	lc := startLocalCluster(t, bin, 3)

	rec := newRecord()
	load := &Load{c: &Cluster{t: t, Nodes: lc.nodes}, rec: rec}
	queues := dmsv1.NewQueueServiceClient(lc.nodes[0].Conn)
	create := func(q *dmsv1.Queue) (*dmsv1.Queue, *dmsv1.ConsumerGroup) {
		resp, err := queues.CreateQueue(context.Background(), &dmsv1.CreateQueueRequest{Parent: "projects/" + project, Queue: q})
		if err != nil {
			t.Fatalf("create queue %s: %v", q.GetDisplayName(), err)
		}
		g, err := queues.CreateConsumerGroup(context.Background(), &dmsv1.CreateConsumerGroupRequest{Parent: resp.GetQueue().GetName(), Group: &dmsv1.ConsumerGroup{DisplayName: "g"}})
		if err != nil {
			t.Fatalf("create group: %v", err)
		}
		return resp.GetQueue(), g.GetGroup()
	}
	normal, normalGroup := create(&dmsv1.Queue{DisplayName: "rolling-normal", Mode: dmsv1.QueueMode_QUEUE_MODE_NORMAL, PartitionCount: 3, ReplicationFactor: 3})
	fifo, fifoGroup := create(&dmsv1.Queue{DisplayName: "rolling-fifo", Mode: dmsv1.QueueMode_QUEUE_MODE_FIFO, ReplicationFactor: 3})

	ctx, stopProducers := context.WithCancel(context.Background())
	cctx, stopConsumers := context.WithCancel(context.Background())
	defer stopConsumers()
	defer stopProducers()
	var producers, consumers sync.WaitGroup
	for i := range 3 {
		producers.Go(func() {
			load.produce(ctx, producer{queue: normal, name: fmt.Sprintf("normal-p%d", i), batch: 5, pause: 20 * time.Millisecond}, i)
		})
	}
	for i := range 2 {
		producers.Go(func() {
			name := fmt.Sprintf("fifo-k%d", i)
			load.produce(ctx, producer{queue: fifo, name: name, key: name, batch: 1, pause: 20 * time.Millisecond}, i)
		})
	}
	for i := range 2 {
		consumers.Go(func() { load.consume(cctx, normal, normalGroup, i) })
		consumers.Go(func() { load.consume(cctx, fifo, fifoGroup, i+1) })
	}
	time.Sleep(2 * time.Second) // the load runs before the first restart

	restarts := 1
	if v := os.Getenv("ROLLING_NODES"); v != "" {
		var err error
		if restarts, err = strconv.Atoi(v); err != nil || restarts < 1 || restarts > len(lc.nodes) {
			t.Fatalf("ROLLING_NODES=%q: 1 to %d", v, len(lc.nodes))
		}
	}
	began := time.Now()
	var windows []restartWindow
	if restarts == len(lc.nodes) {
		windows = lc.restarts(t, "upgrade", lc.bin)
	} else {
		for i := range restarts {
			windows = append(windows, lc.restarts(t, "restart", fmt.Sprintf("node%d", i+2))...)
		}
	}
	ended := time.Now()
	time.Sleep(2 * time.Second) // and after the last
	stopProducers()
	producers.Wait()
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) && len(Check(rec, fifo.GetName()).Lost) > 0 {
		time.Sleep(500 * time.Millisecond)
	}
	time.Sleep(time.Second)
	stopConsumers()
	consumers.Wait()

	r := Check(rec, fifo.GetName())
	gap, slowest := sendGaps(rec, began, ended)
	t.Logf("rolling restart of %d of %d nodes took %s; longest time without an acknowledged send %s, longest send until acknowledged %s\n%s",
		restarts, len(lc.nodes), ended.Sub(began).Round(time.Millisecond), gap.Round(time.Millisecond), slowest.Round(time.Millisecond), r)
	if r.LostOrRedelivered() {
		t.Error("the rolling upgrade lost, duplicated or redelivered acknowledged messages; see the report")
	}
	if len(r.FIFOViolations) > 0 {
		t.Error("FIFO order broken during the rolling upgrade; see the report")
	}
	for _, w := range windows {
		if n := ackedBetween(rec, w.from, w.to); n == 0 {
			t.Errorf("no send acknowledged while %s restarted (%s)", w.node, w.to.Sub(w.from).Round(time.Millisecond))
		} else {
			t.Logf("%s: restarted and caught up in %s, %d messages acknowledged meanwhile", w.node, w.to.Sub(w.from).Round(time.Millisecond), n)
		}
	}
}

// sendGaps returns the longest time in [from, to] without an acknowledged
// send, and the longest a send took from its first attempt to its answer.
func sendGaps(rec *Record, from, to time.Time) (gap, slowest time.Duration) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	acks := []time.Time{from}
	for _, s := range rec.sends {
		if s.acked.After(from) && s.acked.Before(to) {
			acks = append(acks, s.acked)
		}
		if s.started.After(from) && s.started.Before(to) {
			slowest = max(slowest, s.acked.Sub(s.started))
		}
	}
	acks = append(acks, to)
	slices.SortFunc(acks, func(a, b time.Time) int { return a.Compare(b) })
	for i := 1; i < len(acks); i++ {
		gap = max(gap, acks[i].Sub(acks[i-1]))
	}
	return gap, slowest
}

func ackedBetween(rec *Record, from, to time.Time) int {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	n := 0
	for _, s := range rec.sends {
		if s.acked.After(from) && s.acked.Before(to) {
			n++
		}
	}
	return n
}

// localCluster is a cluster of deploy/local-cluster.sh.
type localCluster struct {
	bin    string // dmsd
	script string
	env    []string
	nodes  []*Node
}

type restartWindow struct {
	node     string
	from, to time.Time
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// startLocalCluster runs `local-cluster.sh up n` with the given dmsd on
// ports of a base it finds free, and `down` when the test ends.
func startLocalCluster(t *testing.T, bin string, n int) *localCluster {
	t.Helper()
	lc := &localCluster{bin: bin, script: filepath.Join(repoRoot(), "deploy", "local-cluster.sh")}
	var base int
	for try := 0; ; try++ {
		base = 20000 + rand.IntN(400)*100
		if portsFree(base, n) {
			break
		}
		if try == 20 {
			t.Fatal("no free port range for the local cluster")
		}
	}
	lc.env = append(os.Environ(), "LOCAL_CLUSTER_DIR="+t.TempDir(), "LOCAL_CLUSTER_PORT_BASE="+strconv.Itoa(base),
		"LOCAL_CLUSTER_ETCD_PORT="+strconv.Itoa(base+1), "DMSD="+bin)
	t.Cleanup(func() { lc.run(t, "down") })
	lc.run(t, "up", strconv.Itoa(n))
	for i := 1; i <= n; i++ {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(base+10*i))
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		lc.nodes = append(lc.nodes, &Node{Name: fmt.Sprintf("node%d", i), GRPCAddr: addr, Conn: conn})
	}
	return lc
}

// portsFree reports whether the ports the script would use are free: etcd's
// two at base+1 and base+2, five per node at base+10i.
func portsFree(base, n int) bool {
	ports := []int{base + 1, base + 2}
	for i := 1; i <= n; i++ {
		for p := range 5 {
			ports = append(ports, base+10*i+p)
		}
	}
	for _, p := range ports {
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			return false
		}
		ln.Close()
	}
	return true
}

func (lc *localCluster) run(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command("bash", append([]string{lc.script}, args...)...)
	cmd.Env = lc.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("local-cluster.sh %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// restarts runs `local-cluster.sh upgrade DMSD` (with the same binary:
// what matters here is that every node restarts in turn) or `restart
// NODE`, and returns when each node's restart began and when it was ready
// again, from the script's log.
func (lc *localCluster) restarts(t *testing.T, args ...string) []restartWindow {
	t.Helper()
	cmd := exec.Command("bash", append([]string{lc.script}, args...)...)
	cmd.Env = lc.env
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var windows []restartWindow
	var log strings.Builder
	buf := make([]byte, 4096)
	var line []byte
	start := time.Now()
	for {
		n, err := stderr.Read(buf)
		for _, b := range buf[:n] {
			if b != '\n' {
				line = append(line, b)
				continue
			}
			s := string(line)
			line = line[:0]
			log.WriteString(s + "\n")
			now := time.Now()
			switch {
			case strings.Contains(s, "restarting node"):
				windows = append(windows, restartWindow{node: strings.Fields(s[strings.Index(s, "restarting node"):])[1], from: now})
			case strings.Contains(s, "restarted and ready") && len(windows) > 0:
				windows[len(windows)-1].to = now
			}
		}
		if err != nil {
			break
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("local-cluster.sh %s: %v\n%s", args[0], err, log.String())
	}
	t.Logf("local-cluster.sh %s (%s):\n%s", args[0], time.Since(start).Round(time.Millisecond), log.String())
	for _, w := range windows {
		if w.to.IsZero() {
			t.Fatalf("%s: no \"restarted and ready\" in the log", w.node)
		}
	}
	if args[0] == "upgrade" && len(windows) != len(lc.nodes) {
		t.Fatalf("the upgrade restarted %d nodes, want %d", len(windows), len(lc.nodes))
	}
	return windows
}
