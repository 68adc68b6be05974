package faulttest

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"
)

// Report is what the checker found.
type Report struct {
	Cycles map[string]int // fault cycles run, by kind

	Acknowledged int // messages whose send was answered with success
	Unanswered   int // messages sent but never acknowledged: stored or not
	Delivered    int // deliveries, duplicates included
	// Lost are acknowledged messages never delivered (must be none).
	Lost []string
	// Duplicates are deliveries beyond the first of a message body:
	// Redelivered of the same stored message (an unanswered ack, a
	// visibility timeout), StoredTwice of another copy of it.
	Duplicates, Redelivered, StoredTwice int
	// FIFOViolations are deliveries of a FIFO sequence's message after a
	// later message of the same sequence (must be none).
	FIFOViolations []string
	// AckedThenRedelivered are deliveries of a message, by a receive that
	// began after an ack of it was answered as applied (must be none).
	AckedThenRedelivered []string
	// Failovers are the times from a leader's SIGKILL to the first
	// acknowledged send to its partition through a surviving node.
	Failovers []time.Duration
	// Problems are other failures the harness saw: a failover that did not
	// happen, a cluster that did not settle.
	Problems []string
	Errors   map[string]int
	// ErrorSamples is the first message of each kind of client error.
	ErrorSamples map[string]string
}

// Check compares what was acknowledged with what was delivered.
func Check(rec *Record, fifoQueue string) *Report {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	r := &Report{Acknowledged: len(rec.sends), Unanswered: rec.unanswered, Delivered: len(rec.deliveries), Errors: maps.Clone(rec.errors), ErrorSamples: maps.Clone(rec.errorSample)}

	idsOf := map[string]map[string]bool{} // body → the message ids it was delivered as
	deliveredIDs := map[string]bool{}
	last := map[string]int{}        // FIFO sequence → the highest number delivered
	lastAt := map[string]delivery{} // FIFO sequence → the delivery of that number
	for _, d := range rec.deliveries {
		if idsOf[d.body] == nil {
			idsOf[d.body] = map[string]bool{}
		} else {
			r.Duplicates++
			if deliveredIDs[d.id] {
				r.Redelivered++
			} else {
				r.StoredTwice++
			}
		}
		idsOf[d.body][d.id] = true
		if at, ok := rec.acked[d.id]; ok && d.receiveStarted.After(at) {
			r.AckedThenRedelivered = append(r.AckedThenRedelivered, fmt.Sprintf("%s (%s) acked at %s, delivered again by a receive begun %s after",
				d.body, d.id, at.Format(time.TimeOnly+".000"), d.receiveStarted.Sub(at).Round(time.Millisecond)))
		}
		deliveredIDs[d.id] = true
		if d.queue == fifoQueue {
			seqName, seq := splitSeq(d.body)
			if hi, ok := last[seqName]; ok && seq < hi {
				h := lastAt[seqName]
				r.FIFOViolations = append(r.FIFOViolations, fmt.Sprintf("%s (offset %d, delivery %d, via %s, receive begun %s) delivered after %s (offset %d, delivery %d, via %s, receive begun %s)",
					d.body, d.offset, d.deliveryCount, d.via, d.receiveStarted.Format(time.TimeOnly+".000"),
					h.body, h.offset, h.deliveryCount, h.via, h.receiveStarted.Format(time.TimeOnly+".000")))
			}
			if seq >= last[seqName] {
				last[seqName], lastAt[seqName] = seq, d
			}
		}
	}
	for _, s := range rec.sends {
		if idsOf[s.body] == nil {
			r.Lost = append(r.Lost, fmt.Sprintf("%s (partition %d, acknowledged at %s)", s.body, s.partition, s.acked.Format(time.TimeOnly+".000")))
		}
	}
	return r
}

// Failed reports whether the run broke a promise.
func (r *Report) Failed() bool {
	return r.LostOrRedelivered() || len(r.FIFOViolations) > 0
}

// LostOrRedelivered reports the promises that hold in every run so far:
// nothing acknowledged lost, nothing acked delivered again, the cluster
// heals. (FIFO order under etcd loss does not yet; see Failed.)
func (r *Report) LostOrRedelivered() bool {
	return len(r.Lost) > 0 || len(r.AckedThenRedelivered) > 0 || len(r.Problems) > 0 || r.StoredTwice > 0
}

// percentile returns the p-th percentile (0–100) of sorted durations, by
// the nearest rank.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p/100+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// String is the report as a table.
func (r *Report) String() string {
	var b strings.Builder
	kinds := slices.Sorted(maps.Keys(r.Cycles))
	total := 0
	var cycles []string
	for _, k := range kinds {
		cycles = append(cycles, fmt.Sprintf("%s %d", k, r.Cycles[k]))
		total += r.Cycles[k]
	}
	fo := slices.Clone(r.Failovers)
	sort.Slice(fo, func(i, j int) bool { return fo[i] < fo[j] })
	row := func(name string, v any) { fmt.Fprintf(&b, "  %-52s %v\n", name, v) }
	fmt.Fprintf(&b, "fault cycles: %d (%s)\n", total, strings.Join(cycles, ", "))
	row("messages acknowledged", r.Acknowledged)
	row("sent, never acknowledged (stored or not)", r.Unanswered)
	row("deliveries", r.Delivered)
	row("acknowledged and lost (must be 0)", len(r.Lost))
	row("duplicates delivered", fmt.Sprintf("%d (same message again %d, stored twice %d)", r.Duplicates, r.Redelivered, r.StoredTwice))
	row("FIFO order violations (must be 0)", len(r.FIFOViolations))
	row("acked, then redelivered (must be 0)", len(r.AckedThenRedelivered))
	if len(fo) > 0 {
		row("failover, leader SIGKILL → next acknowledged send", fmt.Sprintf("p50 %s, p99 %s, max %s (%d kills)",
			percentile(fo, 50).Round(time.Millisecond), percentile(fo, 99).Round(time.Millisecond), fo[len(fo)-1].Round(time.Millisecond), len(fo)))
	}
	row("problems (must be none)", len(r.Problems))
	for _, list := range [][]string{r.Lost, r.FIFOViolations, r.AckedThenRedelivered, r.Problems} {
		for i, s := range list {
			if i == 20 {
				fmt.Fprintf(&b, "    ... %d more\n", len(list)-20)
				break
			}
			fmt.Fprintf(&b, "    %s\n", s)
		}
	}
	if len(r.Errors) > 0 {
		var errs []string
		for _, k := range slices.Sorted(maps.Keys(r.Errors)) {
			errs = append(errs, fmt.Sprintf("%s %d", k, r.Errors[k]))
		}
		fmt.Fprintf(&b, "  client errors (retried): %s\n", strings.Join(errs, ", "))
		for _, k := range slices.Sorted(maps.Keys(r.ErrorSamples)) {
			fmt.Fprintf(&b, "    first %s: %s\n", k, r.ErrorSamples[k])
		}
	}
	return b.String()
}
