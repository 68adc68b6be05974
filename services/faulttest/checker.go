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
	// FIFOViolations are deliveries that broke the order of a FIFO
	// sequence (one ordering key; must be none): a message delivered while
	// an earlier one of its key was neither settled (an ack sent that may
	// have applied) nor ahead of it in the same answer — it overtook it —
	// or a message delivered again after a later one of its key was acked.
	// A whole unacknowledged batch coming back in order is not one: the
	// consumer sees the same order again.
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
	}
	r.FIFOViolations = checkFIFO(rec, fifoQueue, idsOf)
	for _, s := range rec.sends {
		if idsOf[s.body] == nil {
			r.Lost = append(r.Lost, fmt.Sprintf("%s (partition %d, acknowledged at %s)", s.body, s.partition, s.acked.Format(time.TimeOnly+".000")))
		}
	}
	return r
}

// checkFIFO returns the deliveries of the FIFO queue that broke the order
// of their sequence. A producer sends a sequence's numbers in order, each
// batch only after the one before was acknowledged, so every acknowledged
// number below n was stored before n. The caller holds rec.mu.
func checkFIFO(rec *Record, fifoQueue string, idsOf map[string]map[string]bool) []string {
	never := time.Unix(1<<40, 0) // later than any event
	// Per sequence and number: the first ack that may have settled it, and
	// the first ack answered as applied (never when there is none).
	mayBegin := map[string]map[int]time.Time{}
	applied := map[string]map[int]time.Time{}
	top := map[string]int{}
	for _, s := range rec.sends {
		if s.queue != fifoQueue {
			continue
		}
		name, seq := splitSeq(s.body)
		if mayBegin[name] == nil {
			mayBegin[name], applied[name] = map[int]time.Time{}, map[int]time.Time{}
		}
		began, done := never, never
		for id := range idsOf[s.body] {
			if t, ok := rec.ackBegan[id]; ok && t.Before(began) {
				began = t
			}
			if t, ok := rec.acked[id]; ok && t.Before(done) {
				done = t
			}
		}
		mayBegin[name][seq], applied[name][seq] = began, done
		top[name] = max(top[name], seq)
	}
	// unsettledBefore[name][n]: the latest moment an ack of a number below n
	// began (never if one was never acked); laterAcked[name][n]: the first
	// applied ack of a number above n.
	unsettledBefore := map[string][]time.Time{}
	laterAcked := map[string][]time.Time{}
	for name, hi := range top {
		ub := make([]time.Time, hi+2)
		for n := 2; n <= hi+1; n++ {
			// A number never acknowledged as sent has no entry (zero time):
			// it was not stored before n.
			ub[n] = ub[n-1]
			if b := mayBegin[name][n-1]; b.After(ub[n]) {
				ub[n] = b
			}
		}
		la := make([]time.Time, hi+2)
		la[hi+1] = never
		for n := hi; n >= 0; n-- {
			la[n] = la[n+1]
			if a, ok := applied[name][n+1]; ok && a.Before(la[n]) {
				la[n] = a
			}
		}
		unsettledBefore[name], laterAcked[name] = ub, la
	}
	var out []string
	inAnswer := map[string]map[int]bool{} // the numbers of each sequence in the current answer so far
	answer := -1
	overtaken := map[string]map[int]bool{}
	for _, d := range rec.deliveries {
		if d.queue != fifoQueue {
			continue
		}
		if d.receive != answer {
			answer, inAnswer = d.receive, map[string]map[int]bool{}
		}
		name, n := splitSeq(d.body)
		if inAnswer[name] == nil {
			inAnswer[name] = map[int]bool{}
		}
		ub, la := unsettledBefore[name], laterAcked[name]
		if ub == nil || n >= len(ub) {
			continue // not acknowledged as sent: its order is not promised
		}
		// The numbers just below n in the same answer came ahead of it.
		first := n
		for first > 1 && inAnswer[name][first-1] {
			first--
		}
		inAnswer[name][n] = true
		if !ub[first].Before(d.receiveAnswered) {
			m := first - 1
			for m > 1 && mayBegin[name][m].Before(d.receiveAnswered) {
				m--
			}
			// One violation per message overtaken, not one per later
			// delivery that passes it.
			if overtaken[name] == nil {
				overtaken[name] = map[int]bool{}
			}
			if overtaken[name][m] {
				continue
			}
			overtaken[name][m] = true
			out = append(out, fmt.Sprintf("%s (offset %d, delivery %d, via %s, answered %s) overtook %s-%d, which was neither acked nor ahead of it in the answer; its history: %s",
				d.body, d.offset, d.deliveryCount, d.via, d.receiveAnswered.Format(time.TimeOnly+".000"), name, m, history(rec, fmt.Sprintf("%s-%d", name, m))))
		}
		if own := applied[name][n]; la[n].Before(d.receiveStarted) && !own.Before(d.receiveStarted) {
			out = append(out, fmt.Sprintf("%s (offset %d, delivery %d, via %s, receive begun %s) delivered again after a later message of its sequence was acked at %s; its history: %s",
				d.body, d.offset, d.deliveryCount, d.via, d.receiveStarted.Format(time.TimeOnly+".000"), la[n].Format(time.TimeOnly+".000"), history(rec, d.body)))
		}
	}
	return out
}

// history describes every delivery of a message body and what became of
// the acks of its ids, for a violation's report. The caller holds rec.mu.
func history(rec *Record, body string) string {
	at := func(t time.Time) string { return t.Format(time.TimeOnly + ".000") }
	var parts []string
	ids := map[string]bool{}
	for _, d := range rec.deliveries {
		if d.body == body {
			parts = append(parts, fmt.Sprintf("delivery %d via %s begun %s answered %s", d.deliveryCount, d.via, at(d.receiveStarted), at(d.receiveAnswered)))
			ids[d.id] = true
		}
	}
	for id := range ids {
		if t, ok := rec.acked[id]; ok {
			parts = append(parts, "ack applied "+at(t))
		} else if t, ok := rec.ackBegan[id]; ok {
			parts = append(parts, "ack unanswered, sent "+at(t))
		}
		if r, ok := rec.ackRefused[id]; ok {
			parts = append(parts, fmt.Sprintf("ack refused %s (%s)", at(r.at), r.reason))
		}
	}
	if len(parts) == 0 {
		return "never delivered"
	}
	return strings.Join(parts, "; ")
}

// Failed reports whether the run broke a promise.
func (r *Report) Failed() bool {
	return r.LostOrRedelivered() || len(r.FIFOViolations) > 0
}

// LostOrRedelivered reports the promises other than FIFO order: nothing
// acknowledged lost or stored twice, nothing acked delivered again, the
// cluster heals.
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
