package dms_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	dms "github.com/opendms/dms/sdk/go"
)

// serverAddr is the gRPC address of the dmsd that TestMain runs for the
// tests and examples of this package.
var serverAddr string

// TestMain builds dmsd from the services module of this repository, runs it
// on free ports in a temporary directory for the whole package, and kills it
// at the end. The SDK does not depend on the services module: the binary is
// built from its own module directory. DMS_TEST_DMSD names a binary to run
// instead.
func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(runWithServer(m))
}

func runWithServer(m *testing.M) int {
	tmp, err := os.MkdirTemp("", "dms-sdk-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)
	stop, addr, _, err := startServer(tmp, nil, nil)
	serverAddr = addr
	if err != nil {
		fmt.Fprintln(os.Stderr, "dms sdk tests:", err)
		return 1
	}
	defer stop()
	return m.Run()
}

// dmsdBin is the dmsd binary the tests run, once built.
var dmsdBin string

// startServer runs a dmsd with extra flags and environment in tmp and
// returns its gRPC and HTTP addresses once it is healthy.
func startServer(tmp string, extra, env []string) (stop func(), grpcAddr, httpAddr string, err error) {
	services, err := filepath.Abs(filepath.Join("..", "..", "services"))
	if err != nil {
		return nil, "", "", err
	}
	// DMS_TEST_DMSD runs a dmsd binary built elsewhere instead.
	bin := os.Getenv("DMS_TEST_DMSD")
	if bin == "" && dmsdBin != "" {
		bin = dmsdBin
	}
	if bin == "" {
		bin = filepath.Join(tmp, "dmsd")
		build := exec.Command("go", "build", "-o", bin, "github.com/opendms/dms/services/cmd/dmsd")
		build.Dir = services
		if out, err := build.CombinedOutput(); err != nil {
			return nil, "", "", fmt.Errorf("building dmsd in %s: %v\n%s", services, err, out)
		}
		dmsdBin = bin
	}
	if grpcAddr, err = freeAddr(); err != nil {
		return nil, "", "", err
	}
	if httpAddr, err = freeAddr(); err != nil {
		return nil, "", "", err
	}
	logFile, err := os.Create(filepath.Join(tmp, "dmsd.log"))
	if err != nil {
		return nil, "", "", err
	}
	// The shortest retry schedule the server allows: a redelivered message
	// comes back after 30 s, which no test waits for.
	cmd := exec.Command(bin, append([]string{"-data-dir", filepath.Join(tmp, "data"), "-grpc-addr", grpcAddr, "-http-addr", httpAddr, "-kafka.addr", "127.0.0.1:0", "-amqp.addr", "127.0.0.1:0", "-log.level", "warn",
		"-delivery.retry-delays", "30s"}, extra...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		return nil, "", "", err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop = func() {
		_ = cmd.Process.Kill()
		<-exited
		logFile.Close()
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + httpAddr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case err := <-exited:
			log, _ := os.ReadFile(logFile.Name())
			logFile.Close()
			return nil, "", "", fmt.Errorf("dmsd exited: %v\n%s", err, log)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			log, _ := os.ReadFile(logFile.Name())
			return nil, "", "", fmt.Errorf("dmsd did not become healthy within 60 s\n%s", log)
		}
	}
	return stop, grpcAddr, httpAddr, nil
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// dial returns a client of the test server, closed when the test ends.
func dial(t testing.TB, opts ...dms.Option) *dms.Client {
	t.Helper()
	c, err := dms.Dial(context.Background(), serverAddr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// newProject returns a project of its own for a test, so that tests neither
// see each other's queues nor share the per-project queue quota.
func newProject(t testing.TB, opts ...dms.Option) *dms.Project {
	t.Helper()
	return dial(t, opts...).Project(uniqueName("p"))
}

func uniqueName(prefix string) string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// newQueue creates a queue with a group "g" in p and returns the queue's
// name.
func newQueue(t testing.TB, p *dms.Project, cfg dms.QueueConfig) string {
	t.Helper()
	ctx := context.Background()
	if cfg.Name == "" {
		cfg.Name = uniqueName("q")
	}
	if _, err := p.CreateQueue(ctx, cfg); err != nil {
		t.Fatalf("CreateQueue: %v", err)
	}
	if _, err := p.CreateGroup(ctx, cfg.Name, "g"); err != nil {
		t.Fatalf("CreateGroup: %v", err)
	}
	return cfg.Name
}

func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls cond until it holds or the time is up.
func eventually(t testing.TB, d time.Duration, cond func() bool, msg string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s: "+msg, append([]any{d}, args...)...)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
