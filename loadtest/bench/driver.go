// Package bench runs messaging workloads against systems reached through
// drivers, in the manner of the OpenMessaging Benchmark: one driver per
// system, the same workload for every driver in a run, warm-up left out of
// the results, latencies in HDR histograms, and reports as JSON, a table and
// an SVG plot.
package bench

import (
	"context"
	"encoding/binary"
	"time"
)

// Driver connects the harness to one system. The runner calls Setup once,
// then NewProducer and NewConsumer as many times as the workload has
// producers and consumers (each is used by one goroutine), and Teardown at
// the end whatever happened. Protocol front ends of DMS (Kafka, AMQP) and a
// streaming DMS consumer are further drivers behind the same interface.
type Driver interface {
	// Setup creates what the workload needs (a queue, topic or stream with
	// the workload's partitions and durability, a consumer group) and says
	// how the system was set up.
	Setup(ctx context.Context, w Workload) (SetupInfo, error)
	NewProducer(ctx context.Context) (Producer, error)
	NewConsumer(ctx context.Context) (Consumer, error)
	// Teardown deletes what Setup created and stops what the driver started.
	Teardown(ctx context.Context) error
}

// BacklogSkipper is a driver whose consumer group can start after everything
// stored so far, as the Top workload needs. The runner calls SkipBacklog with
// its consumers closed and makes new ones afterwards; they consume only what
// is sent from then on. A system whose queues hand out their oldest message
// first whatever the consumer asks (RabbitMQ's classic and quorum queues)
// cannot run the Top workload.
type BacklogSkipper interface {
	SkipBacklog(ctx context.Context) error
}

// SetupInfo is what a driver tells about the system it set up; it goes into
// the report so that every result states its durability.
type SetupInfo struct {
	// System names the system and its version when known, e.g. "NATS 2.14.9".
	System string `json:"system"`
	// Durability says what the system has done with a message when it
	// acknowledges the send, e.g. "fsync before ack (sync_interval: always)".
	Durability string `json:"durability"`
	// Notes are further settings a reader needs to compare fairly.
	Notes []string `json:"notes,omitempty"`
	// ServerPID is the server process whose CPU and RSS are reported; 0 when
	// the harness does not know it.
	ServerPID int `json:"server_pid,omitempty"`
	// MaxSendBatch and MaxReceiveBatch are the most messages the system's API
	// takes in one send or returns from one receive; 0 means no limit. The
	// runner lowers the workload's batches to them and says so.
	MaxSendBatch    int `json:"max_send_batch,omitempty"`
	MaxReceiveBatch int `json:"max_receive_batch,omitempty"`
}

// Producer sends batches of messages.
type Producer interface {
	// Send sends the bodies as one batch where the system has batches, and
	// returns once the system has acknowledged every one of them (after
	// storing them as durably as SetupInfo.Durability says). Send must not
	// keep the bodies after it returns: the caller reuses them.
	Send(ctx context.Context, bodies [][]byte) error
	Close() error
}

// Consumer receives and acknowledges messages as a member of the workload's
// consumer group; consumers compete for messages.
type Consumer interface {
	// Receive returns between 1 and max messages, waiting up to the
	// workload's ReceiveWait for the first (a long poll); it returns no
	// messages and no error when none came. A streaming driver returns what
	// its stream has buffered.
	Receive(ctx context.Context, max int) ([]Delivery, error)
	// Ack settles deliveries that Receive returned, as one call where the
	// system allows it.
	Ack(ctx context.Context, deliveries []Delivery) error
	Close() error
}

// Delivery is one received message.
type Delivery struct {
	// Body starts with the 8-byte send stamp (see Stamp); drivers whose wire
	// format cannot carry raw bytes restore those 8 bytes and may leave out
	// the rest.
	Body []byte
	// Token is what the driver needs to ack the delivery.
	Token any
}

// StampSize is the size of the send time stamp at the start of every body.
const StampSize = 8

// Stamp writes t into the first 8 bytes of body, as nanoseconds since the
// Unix epoch, big endian.
func Stamp(body []byte, t time.Time) {
	binary.BigEndian.PutUint64(body, uint64(t.UnixNano()))
}

// SentAt reads the stamp that Stamp wrote; ok is false when body is too
// short to hold one.
func SentAt(body []byte) (t time.Time, ok bool) {
	if len(body) < StampSize {
		return time.Time{}, false
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(body))), true
}
