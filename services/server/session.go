package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// nodeSession is the node's etcd lease: its membership, its controller
// campaign and its leaderships live under it. Two things make it safe to
// act on:
//
//   - Valid says, from this node's own clock, whether the lease may still be
//     alive at etcd. Every keep-alive is timed from before it was sent, so
//     the node stops trusting its lease before etcd can let it expire: a
//     leader that is paused, or cut off from etcd, stops taking writes
//     before another can be elected in its place.
//   - A lost lease (expired, revoked) is replaced by a new one, and the
//     hooks registered with OnRenew run (the node registers again), so that
//     a node never stays alive in a state where it can no longer serve.
type nodeSession struct {
	cli    *clientv3.Client
	ttl    time.Duration
	logger *slog.Logger

	mu       sync.Mutex
	session  *concurrency.Session
	deadline time.Time     // the lease is trusted until then (monotonic clock)
	lost     chan struct{} // closed when the current lease is lost
	onRenew  []func(*concurrency.Session)
}

// safetyMargin is taken off the lease's life: clocks advance at slightly
// different rates, and a write accepted at the deadline still takes time.
const safetyMargin = 200 * time.Millisecond

func newNodeSession(ctx context.Context, cli *clientv3.Client, ttl time.Duration, logger *slog.Logger) (*nodeSession, error) {
	n := &nodeSession{cli: cli, ttl: ttl, logger: logger}
	if err := n.grant(ctx); err != nil {
		return nil, err
	}
	go n.keepAliveLoop(ctx)
	return n, nil
}

// grant takes a new lease and session.
func (n *nodeSession) grant(ctx context.Context) error {
	sent := time.Now()
	resp, err := n.cli.Grant(ctx, int64(n.ttl/time.Second))
	if err != nil {
		return fmt.Errorf("etcd lease: %w", err)
	}
	s, err := concurrency.NewSession(n.cli, concurrency.WithLease(resp.ID))
	if err != nil {
		return fmt.Errorf("etcd session: %w", err)
	}
	n.mu.Lock()
	n.session = s
	n.deadline = sent.Add(time.Duration(resp.TTL)*time.Second - safetyMargin)
	n.lost = make(chan struct{})
	n.mu.Unlock()
	return nil
}

// Session returns the current session and a channel closed when it is lost.
func (n *nodeSession) Session() (*concurrency.Session, <-chan struct{}) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.session, n.lost
}

// Lease returns the current lease.
func (n *nodeSession) Lease() clientv3.LeaseID {
	s, _ := n.Session()
	return s.Lease()
}

// Valid reports whether the current lease may still be alive at etcd.
func (n *nodeSession) Valid() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return time.Now().Before(n.deadline)
}

// OnRenew registers a hook run with the new session after a lost one was
// replaced.
func (n *nodeSession) OnRenew(fn func(*concurrency.Session)) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.onRenew = append(n.onRenew, fn)
}

func (n *nodeSession) keepAliveLoop(ctx context.Context) {
	interval := n.ttl / 4
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n.mu.Lock()
		s, lost := n.session, n.lost
		n.mu.Unlock()
		sent := time.Now()
		kctx, cancel := context.WithTimeout(ctx, interval)
		resp, err := n.cli.KeepAliveOnce(kctx, s.Lease())
		cancel()
		switch {
		case err == nil && resp.TTL > 0:
			n.mu.Lock()
			if n.session == s {
				n.deadline = sent.Add(time.Duration(resp.TTL)*time.Second - safetyMargin)
			}
			n.mu.Unlock()
			continue
		case err == nil, errors.Is(err, rpctypes.ErrLeaseNotFound):
		default:
			// etcd is not reachable: keep trying while the lease may live.
			if n.Valid() || ctx.Err() != nil {
				continue
			}
		}
		n.logger.Error("etcd session lost; this node stops leading and registers again", "lease", fmt.Sprintf("%x", s.Lease()), "err", err)
		close(lost)
		s.Orphan()
		for ctx.Err() == nil {
			if err := n.grant(ctx); err != nil {
				n.logger.Warn("etcd session: new lease not granted yet", "err", err)
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Second):
				}
				continue
			}
			break
		}
		n.mu.Lock()
		hooks, renewed := n.onRenew, n.session
		n.mu.Unlock()
		for _, fn := range hooks {
			fn(renewed)
		}
	}
}

// Close revokes the lease: the node's registrations go at once.
func (n *nodeSession) Close() {
	s, _ := n.Session()
	if s != nil {
		_ = s.Close()
	}
}
