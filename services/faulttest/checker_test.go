package faulttest

import (
	"fmt"
	"testing"
	"time"
)

// fifoScript builds a Record from a script of receives and acks of one
// FIFO sequence "s" (numbers 1..sent, every one acknowledged as sent).
type fifoScript struct {
	rec *Record
	now time.Time
}

func newFIFOScript(sent int) *fifoScript {
	f := &fifoScript{rec: newRecord(), now: time.Unix(1000, 0)}
	for n := 1; n <= sent; n++ {
		f.rec.sends = append(f.rec.sends, send{queue: "fifo", body: fmt.Sprintf("s-%d", n)})
	}
	return f
}

func (f *fifoScript) tick() time.Time { f.now = f.now.Add(time.Second); return f.now }

// receive records one answer bringing numbers ns, in that order.
func (f *fifoScript) receive(ns ...int) {
	started, answered := f.tick(), f.tick()
	f.rec.receives++
	for _, n := range ns {
		f.rec.deliveries = append(f.rec.deliveries, delivery{queue: "fifo", body: fmt.Sprintf("s-%d", n), id: fmt.Sprintf("id-%d", n),
			receiveStarted: started, receiveAnswered: answered, receive: f.rec.receives})
	}
}

// ack records an ack of numbers ns: applied, unanswered, or refused.
func (f *fifoScript) ack(outcome string, ns ...int) {
	sent, at := f.tick(), f.tick()
	for _, n := range ns {
		id := fmt.Sprintf("id-%d", n)
		switch outcome {
		case "applied":
			f.rec.acked[id] = at
			f.rec.ackMayApply(id, sent)
		case "unanswered":
			f.rec.ackMayApply(id, sent)
		}
	}
}

func TestCheckFIFO(t *testing.T) {
	for _, tc := range []struct {
		name       string
		script     func(f *fifoScript)
		violations int
	}{
		{"in order, acked one answer at a time", func(f *fifoScript) {
			f.receive(1, 2)
			f.ack("applied", 1, 2)
			f.receive(3)
			f.ack("applied", 3)
		}, 0},
		{"an unacked answer comes back whole and in order", func(f *fifoScript) {
			f.receive(1, 2, 3)
			f.ack("refused", 1, 2, 3)
			f.receive(1, 2, 3)
			f.ack("applied", 1, 2, 3)
		}, 0},
		{"an unanswered ack lets the next answer go on", func(f *fifoScript) {
			f.receive(1, 2)
			f.ack("unanswered", 1, 2)
			f.receive(3)
		}, 0},
		{"a later message overtakes an unacked one", func(f *fifoScript) {
			f.receive(1, 2)
			f.ack("refused", 1, 2)
			f.receive(3)
		}, 1},
		{"a message never delivered is overtaken", func(f *fifoScript) {
			f.receive(1)
			f.ack("applied", 1)
			f.receive(3)
		}, 1},
		{"a message comes back after a later one was acked", func(f *fifoScript) {
			f.receive(1, 2)
			f.ack("unanswered", 1)
			f.ack("applied", 2)
			f.receive(1)
		}, 1},
		{"a gap inside one answer", func(f *fifoScript) {
			f.receive(1, 3)
		}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFIFOScript(3)
			tc.script(f)
			r := Check(f.rec, "fifo")
			if len(r.FIFOViolations) != tc.violations {
				t.Errorf("%d FIFO violations, want %d: %q", len(r.FIFOViolations), tc.violations, r.FIFOViolations)
			}
		})
	}
}
