// Package peer holds what the drivers of the peer systems (NATS, RabbitMQ,
// Kafka) share: the state that loadtest/peers/*.sh leave behind, and
// turning a stream of deliveries into receives of a batch.
package peer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/opendms/dms/loadtest/bench"
)

// DefaultDir is where loadtest/peers/*.sh keep their state unless
// DMS_BENCH_PEERS_DIR says otherwise.
func DefaultDir() string {
	if dir := os.Getenv("DMS_BENCH_PEERS_DIR"); dir != "" {
		return dir
	}
	return filepath.Join(os.TempDir(), "dms-bench-peers")
}

// State is what a peer script recorded when it started its server.
type State struct {
	Name string
	// PID is the server process; 0 when the server was not started by the
	// script (then its CPU and RSS are not reported).
	PID int
	// Durability is "sync" or "async" as the script configured the server,
	// or empty when unknown.
	Durability bench.Durability
	// Version is the server's version when the script wrote it down.
	Version string
}

// ReadState reads <dir>/<name>/server.pid, durability and version.
func ReadState(dir, name string) State {
	s := State{Name: name}
	if data, err := os.ReadFile(filepath.Join(dir, name, "server.pid")); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil {
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
				s.PID = pid
			}
		}
	}
	if data, err := os.ReadFile(filepath.Join(dir, name, "durability")); err == nil {
		s.Durability = bench.Durability(strings.TrimSpace(string(data)))
	}
	if data, err := os.ReadFile(filepath.Join(dir, name, "version")); err == nil {
		s.Version = strings.TrimSpace(string(data))
	}
	return s
}

// CheckDurability fails when the server was started for another durability
// mode than the workload's, since the mode is a server setting.
func (s State) CheckDurability(want bench.Durability) error {
	if s.Durability != "" && s.Durability != want {
		return fmt.Errorf("the %s server runs with durability %s, the workload wants %s: restart it with loadtest/peers/%s.sh stop; loadtest/peers/%s.sh start %s",
			s.Name, s.Durability, want, s.Name, s.Name, want)
	}
	return nil
}

// Describe picks the durability text for the server's mode.
func (s State) Describe(sync, async string) string {
	switch s.Durability {
	case bench.Sync:
		return sync
	case bench.Async:
		return async
	}
	return "unknown (server not started by loadtest/peers/" + s.Name + ".sh)"
}

// ErrClosed is what Gather returns once the stream has ended.
var ErrClosed = errors.New("peer: the delivery stream was closed")

// Gather waits up to wait for a first item from ch, then takes what else is
// there at once, up to max in all.
func Gather[T any](ctx context.Context, ch <-chan T, max int, wait time.Duration, conv func(T) bench.Delivery) ([]bench.Delivery, error) {
	t := time.NewTimer(wait)
	defer t.Stop()
	var first T
	var ok bool
	select {
	case first, ok = <-ch:
		if !ok {
			return nil, ErrClosed
		}
	case <-t.C:
		return nil, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	ds := make([]bench.Delivery, 1, max)
	ds[0] = conv(first)
	for len(ds) < max {
		select {
		case item, ok := <-ch:
			if !ok {
				return ds, nil
			}
			ds = append(ds, conv(item))
		default:
			return ds, nil
		}
	}
	return ds, nil
}
