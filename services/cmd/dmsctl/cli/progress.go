package cli

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// progress draws a progress bar on stderr for long operations (produce,
// redrive, bench), only when stderr is a terminal so that scripts and logs
// get none; --progress=false turns it off there too.
type progress struct {
	mu      sync.Mutex
	w       io.Writer
	on      bool
	label   string
	total   int64 // 0 when unknown
	done    int64
	failed  int64
	start   time.Time
	lastOut time.Time
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func (a *app) newProgress(label string, total int64) *progress {
	return &progress{w: a.err, on: isTerminal(a.err), label: label, total: total, start: time.Now()}
}

// add counts n more items done, failed of them failed.
func (p *progress) add(n, failed int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done += int64(n)
	p.failed += int64(failed)
	if p.on && time.Since(p.lastOut) > 100*time.Millisecond {
		p.draw()
	}
}

func (p *progress) draw() {
	p.lastOut = time.Now()
	elapsed := time.Since(p.start).Seconds()
	rate := 0.0
	if elapsed > 0 {
		rate = float64(p.done) / elapsed
	}
	const width = 30
	bar := ""
	if p.total > 0 {
		filled := int(float64(width) * float64(min(p.done, p.total)) / float64(p.total))
		bar = "[" + strings.Repeat("=", filled) + strings.Repeat(" ", width-filled) + "] "
		fmt.Fprintf(p.w, "\r%s %s%d/%d  %.0f/s", p.label, bar, p.done, p.total, rate)
	} else {
		fmt.Fprintf(p.w, "\r%s %d  %.0f/s", p.label, p.done, rate)
	}
	if p.failed > 0 {
		fmt.Fprintf(p.w, "  %d failed", p.failed)
	}
}

// finish draws the last state and ends the line.
func (p *progress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.on {
		p.draw()
		fmt.Fprintln(p.w)
	}
}
