package bench

import (
	"errors"
	"fmt"
	"time"
)

// Kind is what a workload does.
type Kind string

// The workloads.
const (
	// Produce only: producers send as fast as they can (or at Rate).
	Produce Kind = "produce"
	// Consume only: a backlog of Backlog messages is sent first, unmeasured,
	// then consumers drain it.
	Consume Kind = "consume"
	// EndToEnd: producers and consumers run together; consumers ack every
	// message and end-to-end latency is measured from the send stamp.
	EndToEnd Kind = "e2e"
	// Top: end to end at the top of a backlog. The e2e workload runs on the
	// empty queue, then Backlog messages are stored (unmeasured, left
	// unconsumed), the consumer group moves past them, and the e2e workload
	// runs again; the result holds both runs so that they compare in one
	// report.
	Top Kind = "top"
)

// sends tells whether the measured part of a workload has producers.
func (k Kind) sends() bool { return k != Consume }

// consumes tells whether the measured part of a workload has consumers.
func (k Kind) consumes() bool { return k != Produce }

// endToEnd tells whether a workload measures end-to-end latency.
func (k Kind) endToEnd() bool { return k == EndToEnd || k == Top }

// Durability is what a send acknowledgement promises.
type Durability string

// The durability modes.
const (
	// Sync: the message is fsynced before the send is acknowledged.
	Sync Durability = "sync"
	// Async: the send is acknowledged once the server has the message; it is
	// flushed to disk later.
	Async Durability = "async"
)

// Workload is what every driver of a run is given.
type Workload struct {
	Name        string        `json:"name"`
	Kind        Kind          `json:"kind"`
	MessageSize int           `json:"message_size"`
	Producers   int           `json:"producers"`
	Consumers   int           `json:"consumers"`
	Partitions  int           `json:"partitions"`
	Batch       int           `json:"batch"`           // messages per send call
	Linger      time.Duration `json:"linger_ns"`       // longest wait to fill a batch at a target rate
	ReceiveMax  int           `json:"receive_max"`     // messages per receive call
	ReceiveWait time.Duration `json:"receive_wait_ns"` // how long a receive waits for a first message (long poll)
	Rate        float64       `json:"rate"`            // messages/s over all producers; 0 is as fast as possible
	Durability  Durability    `json:"durability"`      // sync or async
	Duration    time.Duration `json:"duration_ns"`     // measured time (a time limit when Messages is set)
	Warmup      time.Duration `json:"warmup_ns"`       // run before measuring, left out of the results
	Messages    int64         `json:"messages"`        // when > 0, measured messages to send (and consume)
	Backlog     int64         `json:"backlog"`         // messages prepared for a consume or top workload
	Interval    time.Duration `json:"interval_ns"`     // progress line and time-series step
	DrainLimit  time.Duration `json:"drain_limit_ns"`  // how long consumers may catch up after producers stop (count mode)
}

// Validate checks the workload and fills defaults.
func (w *Workload) Validate() error {
	var errs []error
	switch w.Kind {
	case Produce, Consume, EndToEnd, Top:
	default:
		errs = append(errs, fmt.Errorf("workload %q is not produce, consume, e2e or top", w.Kind))
	}
	switch w.Durability {
	case Sync, Async:
	default:
		errs = append(errs, fmt.Errorf("durability %q is not sync or async", w.Durability))
	}
	if w.MessageSize < 32 {
		errs = append(errs, fmt.Errorf("message size %d is below 32 bytes", w.MessageSize))
	}
	if w.Kind.sends() && w.Producers < 1 {
		errs = append(errs, errors.New("a workload that sends needs at least one producer"))
	}
	if w.Kind.consumes() && w.Consumers < 1 {
		errs = append(errs, errors.New("a workload that consumes needs at least one consumer"))
	}
	if w.Producers < 1 {
		w.Producers = 1 // the backlog of a consume workload is sent by one
	}
	if w.Partitions < 1 {
		errs = append(errs, errors.New("partitions must be at least 1"))
	}
	if w.Batch < 1 || w.ReceiveMax < 1 {
		errs = append(errs, errors.New("batch and receive-max must be at least 1"))
	}
	if w.Rate < 0 || w.Messages < 0 || w.Backlog < 0 {
		errs = append(errs, errors.New("rate, messages and backlog cannot be negative"))
	}
	if w.Duration <= 0 {
		errs = append(errs, errors.New("duration must be positive"))
	}
	if (w.Kind == Consume || w.Kind == Top) && w.Backlog == 0 {
		errs = append(errs, fmt.Errorf("a %s workload needs a backlog", w.Kind))
	}
	if w.ReceiveWait <= 0 {
		w.ReceiveWait = time.Second
	}
	if w.Interval <= 0 {
		w.Interval = time.Second
	}
	if w.DrainLimit <= 0 {
		w.DrainLimit = 30 * time.Second
	}
	if w.Name == "" {
		w.Name = fmt.Sprintf("%s-%s", w.Kind, sizeName(w.MessageSize))
	}
	return errors.Join(errs...)
}

// sizeName writes a size the way people say it: 100B, 1KiB, 16KiB.
func sizeName(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}
