package amqp

import (
	"context"
	"net/url"
	"strings"
	"time"
)

// x-expires: a queue unused for its period is deleted, as RabbitMQ deletes
// it. Unused means no consumer, no basic.get and no queue.declare of it
// (publishes do not count). The last use is kept in the queue's AMQP
// record (LastUsedMs), written when a use starts or ends and, while
// consumers hold the queue, every half period by the node they are on, so
// that every node's reaper judges from its watch-fed cache alone. Each
// node's reaper looks twice a second: a queue goes within half a second of
// its expiry. Two reapers deleting the same queue is harmless (deleting a
// deleted queue is not an error).

// reapInterval is how often the reaper looks.
const reapInterval = 500 * time.Millisecond

// touch records a use of a queue with x-expires, now; a use within a
// quarter of the period of the last recorded one is not written again
// unless force (a use that ends, which must start the period).
func (s *Server) touch(ctx context.Context, project, name string, force bool) {
	rec := s.topo.queue(project, name)
	if rec == nil || rec.ExpiresMs <= 0 {
		return
	}
	now := time.Now().UnixMilli()
	if !force && now-rec.LastUsedMs < rec.ExpiresMs/4 {
		return
	}
	next := *rec
	next.LastUsedMs = now
	if err := s.topo.put(ctx, queueKey(project, name), &next); err != nil {
		s.logger.Warn("amqp: recording a use of a queue with x-expires failed", "queue", name, "err", err)
	}
}

// reapLoop deletes expired queues until the server stops.
func (s *Server) reapLoop() {
	defer s.wg.Done()
	t := time.NewTicker(reapInterval)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		s.reap()
	}
}

type expiring struct {
	project, name string
	expires, used int64
}

func (s *Server) reap() {
	s.topo.mu.RLock()
	var list []expiring
	for key, rec := range s.topo.queues {
		if rec.ExpiresMs <= 0 {
			continue
		}
		project, escaped, ok := strings.Cut(key, "/")
		name, err := url.PathUnescape(escaped)
		if !ok || err != nil {
			continue
		}
		list = append(list, expiring{project: project, name: name, expires: rec.ExpiresMs, used: rec.LastUsedMs})
	}
	s.topo.mu.RUnlock()
	now := time.Now().UnixMilli()
	for _, e := range list {
		idle := now - e.used
		if idle < e.expires/2 {
			continue
		}
		ctx, cancel := context.WithTimeout(s.ctx, closeOkTimeout)
		q, err := s.deps.Catalog.ResolveQueue(ctx, e.project, e.name)
		if err != nil {
			cancel()
			continue
		}
		switch {
		case s.consumerCount(q.GetId()) > 0:
			// In use here: say so, for the reapers of the other nodes.
			s.touch(ctx, e.project, e.name, true)
		case idle >= e.expires:
			s.logger.Info("amqp: queue expired (x-expires)", "project", e.project, "queue", e.name, "unused_ms", idle)
			if err := s.deleteQueue(ctx, e.project, &amqpQueue{name: e.name, q: q}); err != nil {
				s.logger.Warn("amqp: deleting an expired queue failed", "queue", e.name, "err", err)
			}
		}
		cancel()
	}
}
