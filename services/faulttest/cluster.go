package faulttest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	metadatav1 "github.com/opendms/dms/gen/go/dms/cluster/metadata/v1"
	"github.com/opendms/dms/services/testserver"
)

// Cluster is a cluster of dmsd processes built from this repository, on an
// etcd of the test's own, each node behind proxies (Network) for its
// internal gRPC listener and its etcd connection.
type Cluster struct {
	t     testing.TB
	dir   string // logs and data
	bin   string
	etcd  string
	ttl   time.Duration
	Net   *Network
	Nodes []*Node
	dumps int
}

// Node is one dmsd process and its fixed addresses: a restart keeps them.
type Node struct {
	Name               string
	GRPCAddr, HTTPAddr string // public, dialed by the harness directly
	InternalAddr       string // where the node listens; the others dial Internal
	Internal, Etcd     *Proxy
	DataDir, LogFile   string
	Conn               *grpc.ClientConn // to the public listener
	admin              *grpc.ClientConn // to the internal listener, past the proxy
	mu                 sync.Mutex
	cmd                *exec.Cmd
	exited             chan struct{}
	paused, killed     bool
}

// BuildDMSD builds the dmsd binary once for the test.
func BuildDMSD(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "dmsd")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/opendms/dms/services/cmd/dmsd")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("go build dmsd: %v\n%s", err, out.String())
	}
	return bin
}

func freeAddr(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// StartCluster runs n nodes with every role, replication factor n and the
// given session TTL, and waits until every node is healthy. t.Cleanup
// kills them.
func StartCluster(t testing.TB, bin string, n int, ttl time.Duration) *Cluster {
	t.Helper()
	c := &Cluster{t: t, bin: bin, etcd: testserver.StartEtcd(t), ttl: ttl}
	c.Net = NewNetwork(c.pids)
	dir := t.TempDir()
	c.dir = dir
	for i := range n {
		node := &Node{
			Name: fmt.Sprintf("node%d", i+1), GRPCAddr: freeAddr(t), HTTPAddr: freeAddr(t), InternalAddr: freeAddr(t),
			DataDir: filepath.Join(dir, fmt.Sprintf("node%d", i+1)), LogFile: filepath.Join(dir, fmt.Sprintf("node%d.log", i+1)),
		}
		var err error
		if node.Internal, err = c.Net.NewProxy(node.InternalAddr, node.Name, ""); err != nil {
			t.Fatal(err)
		}
		if node.Etcd, err = c.Net.NewProxy(c.etcd, "etcd", node.Name); err != nil {
			t.Fatal(err)
		}
		if node.Conn, err = grpc.NewClient(node.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
			t.Fatal(err)
		}
		if node.admin, err = grpc.NewClient(node.InternalAddr, grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
			t.Fatal(err)
		}
		c.Nodes = append(c.Nodes, node)
	}
	t.Cleanup(c.stopAll)
	for _, node := range c.Nodes {
		c.start(node)
	}
	for _, node := range c.Nodes {
		c.WaitHealthy(node, time.Minute)
	}
	return c
}

func (c *Cluster) pids() map[int]string {
	out := map[int]string{}
	for _, n := range c.Nodes {
		n.mu.Lock()
		if n.cmd != nil && n.cmd.Process != nil && !n.killed {
			out[n.cmd.Process.Pid] = n.Name
		}
		n.mu.Unlock()
	}
	return out
}

func (c *Cluster) start(n *Node) {
	c.t.Helper()
	log, err := os.OpenFile(n.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		c.t.Fatal(err)
	}
	cmd := exec.Command(c.bin,
		"-etcd.endpoints", n.Etcd.Addr(), "-node.name", n.Name, "-node.zone", "zone-"+n.Name,
		"-server.grpc-addr", n.GRPCAddr, "-server.http-addr", n.HTTPAddr,
		"-server.internal-grpc-addr", n.InternalAddr, "-server.internal-advertise-addr", n.Internal.Addr(),
		"-data-dir", n.DataDir, "-storage.replication-factor", fmt.Sprint(len(c.Nodes)),
		"-node.session-ttl", c.ttl.String(), "-kafka.addr", "", "-amqp.addr", "", "-log.level", "info")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); _ = log.Close(); close(exited) }()
	n.mu.Lock()
	n.cmd, n.exited, n.killed, n.paused = cmd, exited, false, false
	n.mu.Unlock()
}

// WaitHealthy waits until the node answers /healthz with 200.
func (c *Cluster) WaitHealthy(n *Node, timeout time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		n.mu.Lock()
		exited := n.exited
		n.mu.Unlock()
		select {
		case <-exited:
			c.t.Fatalf("%s exited:\n%s", n.Name, c.LogTail(n, 40))
		default:
		}
		resp, err := healthClient.Get("http://" + n.HTTPAddr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Its goroutines, to see where it is stuck.
	n.mu.Lock()
	_ = n.cmd.Process.Signal(syscall.SIGQUIT)
	exited := n.exited
	n.mu.Unlock()
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
	}
	c.t.Fatalf("%s is not healthy after %s; its log, with its goroutines, is %s:\n%s", n.Name, timeout, n.LogFile, c.LogTail(n, 40))
}

var healthClient = &http.Client{Timeout: 2 * time.Second}

// Kill sends SIGKILL and, as the host of a process that is gone does,
// refuses connections to its internal port.
func (c *Cluster) Kill(n *Node) {
	n.mu.Lock()
	cmd, exited := n.cmd, n.exited
	n.killed = true
	n.mu.Unlock()
	_ = cmd.Process.Signal(syscall.SIGKILL)
	n.Internal.Down()
	<-exited
}

// Restart starts a killed node again on its data directory and waits until
// it is healthy.
func (c *Cluster) Restart(n *Node) {
	c.t.Helper()
	if err := n.Internal.Up(); err != nil {
		c.t.Fatal(err)
	}
	c.start(n)
	c.WaitHealthy(n, time.Minute)
}

// Pause stops the process (SIGSTOP); Resume continues it.
func (c *Cluster) Pause(n *Node) { c.signal(n, syscall.SIGSTOP, true) }

// Resume continues a paused process (SIGCONT).
func (c *Cluster) Resume(n *Node) { c.signal(n, syscall.SIGCONT, false) }

func (c *Cluster) signal(n *Node, sig syscall.Signal, paused bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	_ = n.cmd.Process.Signal(sig)
	n.paused = paused
}

// CutEtcd resets the node's etcd connections and refuses new ones until
// RestoreEtcd.
func (c *Cluster) CutEtcd(n *Node) { n.Etcd.Down() }

// RestoreEtcd lets the node reach etcd again.
func (c *Cluster) RestoreEtcd(n *Node) {
	c.t.Helper()
	if err := n.Etcd.Up(); err != nil {
		c.t.Fatal(err)
	}
}

func (c *Cluster) stopAll() {
	defer c.keepLogs()
	for _, n := range c.Nodes {
		n.mu.Lock()
		cmd, exited := n.cmd, n.exited
		n.mu.Unlock()
		if cmd != nil {
			_ = cmd.Process.Signal(syscall.SIGKILL)
			<-exited
		}
		n.Internal.Down()
		n.Etcd.Down()
		_ = n.Conn.Close()
		_ = n.admin.Close()
	}
}

// Placement returns every unit's placement, asked of the first node that
// answers.
func (c *Cluster) Placement() (*metadatav1.DescribePlacementResponse, error) {
	var lastErr error
	for _, n := range c.Nodes {
		resp, err := c.PlacementFrom(n)
		if err == nil {
			return resp, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

// PlacementFrom returns every unit's placement as one node sees it.
func (c *Cluster) PlacementFrom(n *Node) (*metadatav1.DescribePlacementResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return metadatav1.NewMetadataServiceClient(n.admin).DescribePlacement(ctx, &metadatav1.DescribePlacementRequest{})
}

// Settled reports whether every unit has all its replicas in sync, a leader
// and, for shards, an owner, and every member is registered; if not, why.
func Settled(resp *metadatav1.DescribePlacementResponse, nodes int) (bool, string) {
	for _, u := range resp.GetUnits() {
		if len(u.GetIsr()) != nodes || u.GetLeader() == "" || len(u.GetTarget()) > 0 {
			return false, fmt.Sprintf("%v: leader %q isr %v", u.GetUnit(), u.GetLeader(), u.GetIsr())
		}
		if u.GetUnit().GetQueueId() == "" && u.GetOwner() == "" {
			return false, fmt.Sprintf("%v has no owner", u.GetUnit())
		}
	}
	return true, ""
}

// WaitSettled waits until the placement is settled; false with the reason
// after timeout.
func (c *Cluster) WaitSettled(timeout time.Duration) (bool, string) {
	deadline := time.Now().Add(timeout)
	why := ""
	for time.Now().Before(deadline) {
		resp, err := c.Placement()
		if err != nil {
			why = err.Error()
		} else {
			ok, reason := Settled(resp, len(c.Nodes))
			if ok {
				return true, ""
			}
			why = reason
		}
		time.Sleep(100 * time.Millisecond)
	}
	return false, why
}

// DumpGoroutines saves the goroutines of every node that answers, from
// its /debug/pprof, next to its log: where a stuck node is stuck.
func (c *Cluster) DumpGoroutines(why string) {
	c.dumps++
	for _, n := range c.Nodes {
		resp, err := healthClient.Get("http://" + n.HTTPAddr + "/debug/pprof/goroutine?debug=2")
		if err != nil {
			continue
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		_ = os.WriteFile(filepath.Join(c.dir, fmt.Sprintf("%s.goroutines-%d.txt", n.Name, c.dumps)), append([]byte(why+"\n\n"), data...), 0o644)
	}
}

// keepLogs copies the nodes' logs and goroutine dumps out of the test's
// temporary directory when the test failed.
func (c *Cluster) keepLogs() {
	if !c.t.Failed() {
		return
	}
	keep, err := os.MkdirTemp("", "dms-faulttest-")
	if err != nil {
		return
	}
	files, _ := filepath.Glob(filepath.Join(c.dir, "node*.*"))
	for _, f := range files {
		if data, err := os.ReadFile(f); err == nil {
			_ = os.WriteFile(filepath.Join(keep, filepath.Base(f)), data, 0o644)
		}
	}
	c.t.Logf("node logs and goroutine dumps kept in %s", keep)
}

// Node returns the node of a name.
func (c *Cluster) Node(name string) *Node {
	i := slices.IndexFunc(c.Nodes, func(n *Node) bool { return n.Name == name })
	if i < 0 {
		return nil
	}
	return c.Nodes[i]
}

// LogTail returns the last lines of a node's log.
func (c *Cluster) LogTail(n *Node, lines int) string {
	data, _ := os.ReadFile(n.LogFile)
	all := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	return strings.Join(all[max(0, len(all)-lines):], "\n")
}
