package faulttest

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestFaults runs the fault rounds against a three-node cluster of dmsd
// processes and fails on any acknowledged message lost, FIFO order broken,
// acked message redelivered, failover that does not happen or cluster that
// does not heal. The default go test runs its short form, one round (one
// cycle of every kind); FAULT_CYCLES sets the rounds (make fault-test),
// FAULT_SEED the random choices, FAULT_SESSION_TTL the nodes'
// -node.session-ttl (3s), FAULT_KINDS the kinds of fault (all).
func TestFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a cluster of dmsd processes through faults")
	}
	opt := Options{Rounds: 1, SessionTTL: 3 * time.Second, Seed: uint64(time.Now().UnixNano()), Logf: t.Logf}
	if v := os.Getenv("FAULT_CYCLES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("FAULT_CYCLES=%q: a positive number of rounds", v)
		}
		opt.Rounds = n
	}
	if v := os.Getenv("FAULT_SEED"); v != "" {
		seed, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("FAULT_SEED=%q: %v", v, err)
		}
		opt.Seed = seed
	}
	if v := os.Getenv("FAULT_SESSION_TTL"); v != "" {
		ttl, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("FAULT_SESSION_TTL=%q: %v", v, err)
		}
		opt.SessionTTL = ttl
	}
	if v := os.Getenv("FAULT_KINDS"); v != "" {
		opt.Kinds = strings.Split(v, ",")
	}
	r := Run(t, opt)
	t.Logf("fault test report (seed %d):\n%s", opt.Seed, r)
	if r.Failed() {
		t.Errorf("the cluster broke a promise under faults (seed %d); see the report above", opt.Seed)
	}
}
