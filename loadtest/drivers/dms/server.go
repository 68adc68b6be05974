// Package dms holds the dms-bench drivers of DMS: its gRPC API (dms-grpc)
// and its DMS v1.0 REST API (dms-rest). Either reaches a dmsd given by
// address or one that the driver builds from the repository and starts
// fresh for each run, with its data in a temp dir.
package dms

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Launcher builds dmsd once and starts fresh servers from it.
type Launcher struct {
	// RepoDir is the repository root (it holds go.work and services/).
	RepoDir string
	// Binary is a dmsd to run; when empty, Launcher builds one from RepoDir.
	Binary string

	mu       sync.Mutex
	buildDir string
}

// FindRepo looks for the repository root from dir upwards.
func FindRepo(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "services", "cmd", "dmsd")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("dms: no services/cmd/dmsd above the working directory; give -dms-src or -dmsd")
		}
		dir = parent
	}
}

// binary returns the dmsd to run, building it on first use.
func (l *Launcher) binary(ctx context.Context) (string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.Binary != "" {
		return l.Binary, nil
	}
	dir, err := os.MkdirTemp("", "dms-bench-dmsd-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "dmsd")
	// Built inside the services module, so that it works with the
	// repository's go.work and with GOWORK=off alike.
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/dmsd")
	build.Dir = filepath.Join(l.RepoDir, "services")
	if out, err := build.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("dms: building dmsd in %s: %w\n%s", l.RepoDir, err, out)
	}
	l.buildDir, l.Binary = dir, bin
	return bin, nil
}

// Close removes the dmsd that the launcher built.
func (l *Launcher) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.buildDir == "" {
		return nil
	}
	err := os.RemoveAll(l.buildDir)
	l.buildDir, l.Binary = "", ""
	return err
}

// Server is a running dmsd that a Launcher started.
type Server struct {
	GRPCAddr string
	HTTPAddr string
	// KafkaAddr is the Kafka listener's address.
	KafkaAddr string
	// AMQPAddr is the AMQP listener's address.
	AMQPAddr string
	PID      int
	Version  string

	cmd     *exec.Cmd
	dataDir string
	stderr  *tailBuffer
	exited  chan struct{}
}

var (
	listeningLine = regexp.MustCompile(`dmsd listening: grpc=(\S+) http=(\S+)`)
	kafkaAddr     = regexp.MustCompile(` kafka=(\S+)`)
	amqpAddr      = regexp.MustCompile(` amqp=(\S+)`)
)

// Start runs a dmsd on free loopback ports with a new data dir and waits
// until it answers /healthz; extra are further flags.
func (l *Launcher) Start(ctx context.Context, extra ...string) (*Server, error) {
	bin, err := l.binary(ctx)
	if err != nil {
		return nil, err
	}
	dataDir, err := os.MkdirTemp("", "dms-bench-data-")
	if err != nil {
		return nil, err
	}
	s := &Server{dataDir: dataDir, stderr: new(tailBuffer), exited: make(chan struct{})}
	s.cmd = exec.Command(bin, "-data-dir", dataDir, "-grpc-addr", "127.0.0.1:0", "-http-addr", "127.0.0.1:0", "-kafka.addr", "127.0.0.1:0", "-amqp.addr", "127.0.0.1:0", "-log.level", "warn")
	s.cmd.Args = append(s.cmd.Args, extra...)
	s.cmd.Stderr = s.stderr
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := s.cmd.Start(); err != nil {
		os.RemoveAll(dataDir)
		return nil, fmt.Errorf("dms: starting %s: %w", bin, err)
	}
	s.PID = s.cmd.Process.Pid
	addrs := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := listeningLine.FindStringSubmatch(sc.Text()); m != nil {
				k := kafkaAddr.FindStringSubmatch(sc.Text())
				if k == nil {
					k = []string{"", ""}
				}
				a := amqpAddr.FindStringSubmatch(sc.Text())
				if a == nil {
					a = []string{"", ""}
				}
				addrs <- append(m[1:], k[1], a[1])
			}
		}
	}()
	go func() { _ = s.cmd.Wait(); close(s.exited) }()

	fail := func(err error) (*Server, error) {
		_ = s.Stop()
		return nil, fmt.Errorf("dms: dmsd did not start: %w; its stderr:\n%s", err, s.stderr.String())
	}
	select {
	case a := <-addrs:
		s.GRPCAddr, s.HTTPAddr, s.KafkaAddr, s.AMQPAddr = a[0], a[1], a[2], a[3]
	case <-s.exited:
		return fail(errors.New("it exited"))
	case <-time.After(2 * time.Minute):
		return fail(errors.New("no listening line in 2 minutes"))
	case <-ctx.Done():
		return fail(ctx.Err())
	}
	for {
		resp, err := http.Get("http://" + s.HTTPAddr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s, nil
			}
		}
		select {
		case <-s.exited:
			return fail(errors.New("it exited"))
		case <-ctx.Done():
			return fail(ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Stop ends the server (SIGTERM, then SIGKILL after 20 s) and removes its
// data.
func (s *Server) Stop() error {
	if s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(20 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
	}
	return os.RemoveAll(s.dataDir)
}

// tailBuffer keeps the last 32 to 64 KiB written to it, enough to explain a
// failure; the exec package writes while Start reads.
type tailBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.buf.Len() > 64<<10 {
		tail := append([]byte(nil), t.buf.Bytes()[t.buf.Len()-32<<10:]...)
		t.buf.Reset()
		t.buf.Write(tail)
	}
	return t.buf.Write(p)
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.buf.String()
}

func (s *Server) String() string {
	return fmt.Sprintf("dmsd pid %d grpc=%s http=%s", s.PID, s.GRPCAddr, strings.TrimSpace(s.HTTPAddr))
}
