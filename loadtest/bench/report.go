package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is everything one dms-bench invocation measured: one scenario per
// workload, one result per driver.
type Report struct {
	Generated time.Time   `json:"generated"`
	Host      Host        `json:"host"`
	Fairness  []string    `json:"fairness"`
	Scenarios []*Scenario `json:"scenarios"`
}

// Host describes where the run happened.
type Host struct {
	CPUs      int    `json:"cpus"`
	GoVersion string `json:"go_version"`
	OS        string `json:"os"`
}

// Scenario is one workload run by every driver in turn.
type Scenario struct {
	Workload Workload  `json:"workload"`
	Results  []*Result `json:"results"`
}

// FairnessRules are the rules every comparison in a report follows.
var FairnessRules = []string{
	"every driver runs the same workload (message size, producers, consumers, batch, partitions, rate, duration, message count) one after the other in the same run",
	"every server listens on 127.0.0.1 on the same machine as the harness; client and server share its cores",
	"each result states what the system has done with a message when it acknowledges the send (durability)",
	"warm-up is run and left out of the results; latencies come from HDR histograms (1 µs to 10 min, 3 digits)",
	"end-to-end latency runs from the send stamp in the first 8 bytes of the body to its receive",
}

// NewReport starts a report for this machine.
func NewReport() *Report {
	return &Report{
		Generated: time.Now().UTC(),
		Host:      Host{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH},
		Fairness:  FairnessRules,
	}
}

// MarshalJSON writes durations as Go duration strings, for people reading
// the JSON too.
func (w Workload) MarshalJSON() ([]byte, error) {
	type plain Workload
	return json.Marshal(struct {
		plain
		Linger      string `json:"linger"`
		ReceiveWait string `json:"receive_wait"`
		Duration    string `json:"duration"`
		Warmup      string `json:"warmup"`
		Interval    string `json:"interval"`
		DrainLimit  string `json:"drain_limit"`
	}{plain(w), w.Linger.String(), w.ReceiveWait.String(), w.Duration.String(), w.Warmup.String(), w.Interval.String(), w.DrainLimit.String()})
}

// WriteFiles writes report.json, report.txt (the tables) and one SVG plot per
// scenario into dir, and returns their paths.
func (r *Report) WriteFiles(dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var paths []string
	write := func(name string, fill func(io.Writer) error) error {
		path := filepath.Join(dir, name)
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		if err := fill(f); err != nil {
			f.Close()
			return fmt.Errorf("bench: writing %s: %w", path, err)
		}
		if err := f.Close(); err != nil {
			return err
		}
		paths = append(paths, path)
		return nil
	}
	if err := write("report.json", func(w io.Writer) error {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}); err != nil {
		return paths, err
	}
	if err := write("report.txt", func(w io.Writer) error { r.WriteTable(w); return nil }); err != nil {
		return paths, err
	}
	for _, s := range r.Scenarios {
		if err := write(s.Workload.Name+".svg", func(w io.Writer) error { return s.WriteSVG(w) }); err != nil {
			return paths, err
		}
	}
	return paths, nil
}

// WriteTable writes one table per scenario, for people.
func (r *Report) WriteTable(out io.Writer) {
	for i, s := range r.Scenarios {
		if i > 0 {
			fmt.Fprintln(out)
		}
		s.WriteTable(out)
	}
}

// Describe says what a workload is in one line.
func (w Workload) Describe() string {
	rate := "max rate"
	if w.Rate > 0 {
		rate = fmt.Sprintf("%.0f msg/s", w.Rate)
	}
	parts := []string{string(w.Kind), sizeName(w.MessageSize)}
	if w.Kind.sends() {
		parts = append(parts, fmt.Sprintf("%d producers x batch %d", w.Producers, w.Batch), rate)
	}
	if w.Kind.consumes() {
		parts = append(parts, fmt.Sprintf("%d consumers x receive %d (wait %s)", w.Consumers, w.ReceiveMax, w.ReceiveWait))
	}
	switch w.Kind {
	case Consume:
		parts = append(parts, fmt.Sprintf("backlog %d", w.Backlog))
	case Top:
		parts = append(parts, fmt.Sprintf("on the empty queue, then at the top of a backlog of %d", w.Backlog))
	}
	parts = append(parts, fmt.Sprintf("%d partitions", w.Partitions), "durability "+string(w.Durability))
	if w.Messages > 0 {
		parts = append(parts, fmt.Sprintf("%d messages (limit %s)", w.Messages, w.Duration))
	} else {
		parts = append(parts, w.Duration.String())
	}
	if w.Warmup > 0 && w.Kind.sends() {
		parts = append(parts, "warm-up "+w.Warmup.String())
	}
	return strings.Join(parts, ", ")
}

// WriteTable writes the scenario's results, the durability of each system
// and the ratio of each DMS driver to each peer.
func (s *Scenario) WriteTable(out io.Writer) {
	w := s.Workload
	fmt.Fprintf(out, "== %s: %s\n", w.Name, w.Describe())
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%-18s\tsent msg/s\tMB/s\trecv msg/s\tMB/s\tpub p50\tp99\tp99.9\tmax\te2e p50\tp99\tp99.9\tmax\tsrv CPU%%\tsrv RSS MB\tcli CPU%%\terrors\t\n", "driver")
	for _, res := range s.rows() {
		if res.Skipped != "" {
			fmt.Fprintf(tw, "%-18s\tskipped\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\n", res.Driver)
			continue
		}
		row := []string{fmt.Sprintf("%-18s", res.Driver)} // left-aligned in a right-aligned table
		if !w.Kind.sends() {
			row = append(row, "-", "-")
		} else {
			row = append(row, fmt.Sprintf("%.0f", res.SendRate), fmt.Sprintf("%.1f", res.SendMBps))
		}
		if !w.Kind.consumes() {
			row = append(row, "-", "-")
		} else {
			row = append(row, fmt.Sprintf("%.0f", res.RecvRate), fmt.Sprintf("%.1f", res.RecvMBps))
		}
		row = append(row, latencyCells(res.Publish)...)
		row = append(row, latencyCells(res.EndToEnd)...)
		if res.Server != nil {
			row = append(row, fmt.Sprintf("%.0f", res.Server.CPUPercent), fmt.Sprintf("%.0f", res.Server.RSSMaxMB))
		} else {
			row = append(row, "?", "?")
		}
		if res.Client != nil {
			row = append(row, fmt.Sprintf("%.0f", res.Client.CPUPercent))
		} else {
			row = append(row, "?")
		}
		row = append(row, fmt.Sprint(res.Errors))
		fmt.Fprintln(tw, strings.Join(row, "\t")+"\t")
	}
	tw.Flush()
	fmt.Fprintln(out, "latencies in ms; CPU% of one core (200 = both cores); RSS is the largest seen")
	for _, res := range s.Results {
		if res.Skipped != "" {
			fmt.Fprintf(out, "  %s: skipped: %s\n", res.Driver, res.Skipped)
			continue
		}
		fmt.Fprintf(out, "  %s: %s; %s", res.Driver, res.Setup.System, res.Setup.Durability)
		if len(res.Notes) > 0 {
			fmt.Fprintf(out, "; %s", strings.Join(res.Notes, "; "))
		}
		if !res.Complete {
			fmt.Fprint(out, "; INCOMPLETE")
		}
		if res.FirstError != "" {
			fmt.Fprintf(out, "; first error: %s", res.FirstError)
		}
		if res.Stale > 0 {
			fmt.Fprintf(out, "; %d deliveries of messages sent before the run began", res.Stale)
		}
		fmt.Fprintln(out)
		if b := res.Backlog; b != nil {
			line := fmt.Sprintf("    backlog: %d messages sent in %.0fs (%.0f msg/s, %.1f MB/s)", b.Messages, b.Seconds, b.SendRate, b.SendMBps)
			if b.Server != nil {
				line += fmt.Sprintf(", server RSS largest %.0f MiB, at the end %.0f MiB", b.Server.RSSMaxMB, b.Server.RSSEndMB)
			}
			fmt.Fprintln(out, line)
		}
	}
	s.writeTopRatios(out)
	s.writeRatios(out)
}

// rows are the results in table order: a Top result's empty-queue run just
// before it.
func (s *Scenario) rows() []*Result {
	var rows []*Result
	for _, res := range s.Results {
		if res.EmptyQueue != nil {
			rows = append(rows, res.EmptyQueue)
		}
		rows = append(rows, res)
	}
	return rows
}

// writeTopRatios compares each Top result with its own run on the empty
// queue: throughput, end-to-end p99 and server RSS.
func (s *Scenario) writeTopRatios(out io.Writer) {
	var lines []string
	for _, top := range s.Results {
		empty := top.EmptyQueue
		if top.Skipped != "" || empty == nil {
			continue
		}
		line := fmt.Sprintf("  %s: received %s, sent %s", top.Driver, ratio(top.RecvRate, empty.RecvRate), ratio(top.SendRate, empty.SendRate))
		if name, tl := headlineP99(top); name != "" {
			if _, el := headlineP99(empty); el > 0 {
				line += fmt.Sprintf(", %s %s", name, ratio(tl, el))
			}
		}
		if top.Server != nil && empty.Server != nil {
			line += fmt.Sprintf(", server RSS largest %.0f MiB at the top vs %.0f MiB empty", top.Server.RSSMaxMB, empty.Server.RSSMaxMB)
		}
		lines = append(lines, line)
	}
	if len(lines) > 0 {
		fmt.Fprintln(out, "top of the backlog / empty queue (throughput 1.00x: no slower with the backlog):")
		fmt.Fprintln(out, strings.Join(lines, "\n"))
	}
}

func latencyCells(l *Latency) []string {
	if l == nil {
		return []string{"-", "-", "-", "-"}
	}
	return []string{fmtLatency(l.P50), fmtLatency(l.P99), fmtLatency(l.P999), fmtLatency(l.Max)}
}

func fmtLatency(ms float64) string {
	switch {
	case ms >= 100:
		return fmt.Sprintf("%.0f", ms)
	case ms >= 10:
		return fmt.Sprintf("%.1f", ms)
	}
	return fmt.Sprintf("%.2f", ms)
}

// IsDMS tells DMS drivers from peers by name.
func IsDMS(driver string) bool { return strings.HasPrefix(driver, "dms-") }

// headlineRate is the throughput that a workload is about.
func headlineRate(res *Result) float64 {
	if res.Workload.Kind == Produce {
		return res.SendRate
	}
	return res.RecvRate
}

// headlineP99 is the p99 latency that a workload is about.
func headlineP99(res *Result) (string, float64) {
	if res.EndToEnd != nil {
		return "e2e p99", res.EndToEnd.P99
	}
	if res.Publish != nil {
		return "pub p99", res.Publish.P99
	}
	return "", 0
}

func (s *Scenario) writeRatios(out io.Writer) {
	var dms, peers []*Result
	for _, res := range s.Results {
		switch {
		case res.Skipped != "":
		case IsDMS(res.Driver):
			dms = append(dms, res)
		default:
			peers = append(peers, res)
		}
	}
	if len(dms) == 0 || len(peers) == 0 {
		return
	}
	fmt.Fprintln(out, "ratio DMS/peer (throughput above 1: DMS faster; latency below 1: DMS faster):")
	for _, d := range dms {
		for _, p := range peers {
			line := fmt.Sprintf("  %s / %s: throughput %s", d.Driver, p.Driver, ratio(headlineRate(d), headlineRate(p)))
			if name, dl := headlineP99(d); name != "" {
				if _, pl := headlineP99(p); pl > 0 {
					line += fmt.Sprintf(", %s %s", name, ratio(dl, pl))
				}
			}
			fmt.Fprintln(out, line)
		}
	}
}

func ratio(a, b float64) string {
	if b == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2fx", a/b)
}
