package amqp

import (
	"sync"
	"time"

	"github.com/opendms/dms/services/amqp/wire"
	"github.com/opendms/dms/services/errs"
	"github.com/opendms/dms/services/rpcstatus"
)

// connection.blocked while storage refuses writes (a full disk:
// STORAGE_FULL), as RabbitMQ blocks publishers during a disk alarm. A
// publish that storage refuses so is not nacked: the channel's publisher
// retries its batch every storageRetry until storage takes it (then
// confirms it) or the channel closes. Meanwhile its pipeline fills and the
// connection's reading stops, so that the publisher waits in TCP — what
// RabbitMQ does to a blocked connection. The node is blocked while at
// least one publisher waits so; every connection whose client announced
// the capability connection.blocked gets connection.blocked when that
// starts (or when it opens during it) and connection.unblocked when it
// ends. Other refusals (RATE_LIMITED, a queue deleted) are nacks, as
// before: they do not go away by waiting for the disk.

// storageRetry is how often a publisher retries a batch storage refused
// for lack of space.
const storageRetry = 250 * time.Millisecond

// blockedReason is connection.blocked's reason, in RabbitMQ's words.
const blockedReason = "low on disk: storage is full (STORAGE_FULL); publishes are held until it has room"

// alarm counts the publishers waiting for storage to have room.
type alarm struct {
	mu      sync.Mutex
	waiting int
}

func storageFull(err error) bool {
	return err != nil && rpcstatus.Reason(rpcstatus.Error(err)) == errs.ErrStorageFull.Reason
}

// waitForRoom is called by a publisher whose write storage refused for
// lack of space, before it waits; roomAgain when it stops waiting.
func (s *Server) waitForRoom() {
	s.alarm.mu.Lock()
	defer s.alarm.mu.Unlock()
	s.alarm.waiting++
	if s.alarm.waiting == 1 {
		s.logger.Warn("amqp: storage is full: publishers are blocked (connection.blocked)")
		s.setBlocked(true)
	}
}

func (s *Server) roomAgain() {
	s.alarm.mu.Lock()
	defer s.alarm.mu.Unlock()
	s.alarm.waiting--
	if s.alarm.waiting == 0 {
		s.logger.Info("amqp: storage takes writes again: publishers are unblocked (connection.unblocked)")
		s.setBlocked(false)
	}
}

// setBlocked tells every open connection; called with alarm.mu held.
func (s *Server) setBlocked(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.wantBlocked(on)
	}
}

// opened is called once a connection is open: it is blocked at once when
// publishers are.
func (c *conn) opened() {
	s := c.srv
	s.alarm.mu.Lock()
	defer s.alarm.mu.Unlock()
	c.bmu.Lock()
	c.open = true
	c.bmu.Unlock()
	if s.alarm.waiting > 0 {
		c.wantBlocked(true)
	}
}

// wantBlocked records what the client should know and sends it from a
// goroutine of its own, so that a client that does not read cannot hold
// the alarm (and every publisher) up; the sends are serialized and each
// sends the latest state, so that the client ends up knowing it.
func (c *conn) wantBlocked(on bool) {
	c.bmu.Lock()
	c.blockedWant = on
	c.bmu.Unlock()
	go func() {
		c.bmu.Lock()
		defer c.bmu.Unlock()
		if !c.open || !c.blockedCap || c.blockedWant == c.blockedSent {
			return
		}
		c.blockedSent = c.blockedWant
		if c.blockedSent {
			c.send(0, &wire.ConnectionBlocked{Reason: blockedReason})
		} else {
			c.send(0, &wire.ConnectionUnblocked{})
		}
		c.flush()
	}()
}
