package bench

import (
	"fmt"
	"html"
	"io"
	"math"
	"strings"
)

// Plot geometry, in SVG user units.
const (
	svgWidth    = 980
	chartHeight = 260
	marginLeft  = 70
	marginRight = 190
	marginTop   = 76
	chartGap    = 60
	plotWidth   = svgWidth - marginLeft - marginRight
)

var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"}

// series is one line of a chart.
type series struct {
	color  string
	dashed bool
	points [][2]float64 // (t, value)
}

// WriteSVG plots throughput and p99 latency over the measured time of every
// driver of the scenario: two charts, one line colour per driver; solid
// lines are sends (top) and end-to-end latency (bottom), dashed lines
// receives and publish latency.
func (s *Scenario) WriteSVG(out io.Writer) error {
	var b strings.Builder
	height := marginTop + 2*chartHeight + chartGap + 50
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n",
		svgWidth, height, svgWidth, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%d" y="20" font-size="15" font-weight="bold">%s</text>`+"\n", marginLeft, esc("dms-bench: "+s.Workload.Name))
	fmt.Fprintf(&b, `<text x="%d" y="38" fill="#444">%s</text>`+"\n", marginLeft, esc(s.Workload.Describe()))

	var rates, latencies []series
	maxT := 1.0
	rows := s.rows()
	for i, res := range rows {
		color := palette[i%len(palette)]
		var sent, recv, pub, e2e series
		sent.color, recv.color, pub.color, e2e.color = color, color, color, color
		recv.dashed, pub.dashed = true, true
		for _, p := range res.Series {
			maxT = max(maxT, p.T)
			if s.Workload.Kind.sends() {
				sent.points = append(sent.points, [2]float64{p.T, p.SendRate})
			}
			if s.Workload.Kind.consumes() {
				recv.points = append(recv.points, [2]float64{p.T, p.RecvRate})
			}
			if p.PubP99 > 0 {
				pub.points = append(pub.points, [2]float64{p.T, p.PubP99})
			}
			if p.E2EP99 > 0 {
				e2e.points = append(e2e.points, [2]float64{p.T, p.E2EP99})
			}
		}
		rates = append(rates, sent, recv)
		latencies = append(latencies, e2e, pub)
	}
	top := marginTop
	writeChart(&b, top, "throughput (msg/s): solid sent, dashed received", rates, maxT, false)
	writeChart(&b, top+chartHeight+chartGap, "p99 latency per interval (ms, log scale): solid end-to-end, dashed publish", latencies, maxT, true)

	// Legend: one colour per driver.
	for i, res := range rows {
		y := marginTop + 20 + i*20
		x := svgWidth - marginRight + 20
		label := res.Driver
		if res.Skipped != "" {
			label += " (skipped)"
		}
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="3"/>`+"\n", x, y-4, x+24, y-4, palette[i%len(palette)])
		fmt.Fprintf(&b, `<text x="%d" y="%d">%s</text>`+"\n", x+30, y, esc(label))
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle" fill="#444">seconds since measuring started (warm-up excluded)</text>`+"\n",
		marginLeft+plotWidth/2, height-12)
	b.WriteString("</svg>\n")
	_, err := io.WriteString(out, b.String())
	return err
}

// writeChart draws axes, grid and lines of one chart whose top edge is at y0.
func writeChart(b *strings.Builder, y0 int, title string, lines []series, maxT float64, logScale bool) {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, l := range lines {
		for _, p := range l.points {
			lo, hi = min(lo, p[1]), max(hi, p[1])
		}
	}
	fmt.Fprintf(b, `<text x="%d" y="%d" font-weight="bold">%s</text>`+"\n", marginLeft, y0-8, esc(title))
	fmt.Fprintf(b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#888"/>`+"\n", marginLeft, y0, plotWidth, chartHeight)
	if math.IsInf(lo, 1) {
		fmt.Fprintf(b, `<text x="%d" y="%d" text-anchor="middle" fill="#888">no data</text>`+"\n", marginLeft+plotWidth/2, y0+chartHeight/2)
		return
	}
	// y maps a value to the chart; ticks are the grid values.
	var y func(v float64) float64
	var ticks []float64
	if logScale {
		lo = math.Pow(10, math.Floor(math.Log10(max(lo, 0.001))))
		hi = math.Pow(10, math.Ceil(math.Log10(max(hi, lo*10))))
		if hi <= lo {
			hi = lo * 10
		}
		y = func(v float64) float64 {
			f := (math.Log10(max(v, lo)) - math.Log10(lo)) / (math.Log10(hi) - math.Log10(lo))
			return float64(y0+chartHeight) - f*chartHeight
		}
		for t := lo; t <= hi*1.0001; t *= 10 {
			ticks = append(ticks, t)
		}
	} else {
		step := niceStep(hi / 5)
		hi = math.Max(step, math.Ceil(hi*1.05/step)*step)
		y = func(v float64) float64 { return float64(y0+chartHeight) - v/hi*chartHeight }
		for t := 0.0; t <= hi*1.0001; t += step {
			ticks = append(ticks, t)
		}
	}
	x := func(t float64) float64 { return marginLeft + t/maxT*plotWidth }
	for _, t := range ticks {
		fmt.Fprintf(b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#e5e5e5"/>`+"\n", marginLeft, y(t), marginLeft+plotWidth, y(t))
		fmt.Fprintf(b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", marginLeft-6, y(t)+4, tickLabel(t))
	}
	tStep := niceStep(maxT / 8)
	for t := 0.0; t <= maxT*1.0001; t += tStep {
		fmt.Fprintf(b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", x(t), y0+chartHeight+16, tickLabel(t))
	}
	for _, l := range lines {
		if len(l.points) == 0 {
			continue
		}
		var pts []string
		for _, p := range l.points {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(p[0]), y(p[1])))
		}
		dash := ""
		if l.dashed {
			dash = ` stroke-dasharray="6 4"`
		}
		fmt.Fprintf(b, `<polyline fill="none" stroke="%s" stroke-width="2"%s points="%s"/>`+"\n", l.color, dash, strings.Join(pts, " "))
	}
}

// niceStep rounds a rough step up to 1, 2 or 5 times a power of ten.
func niceStep(rough float64) float64 {
	if rough <= 0 {
		return 1
	}
	mag := math.Pow(10, math.Floor(math.Log10(rough)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*mag >= rough {
			return m * mag
		}
	}
	return 10 * mag
}

func tickLabel(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%gM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%gk", v/1e3)
	}
	return fmt.Sprintf("%g", math.Round(v*1000)/1000)
}

func esc(s string) string { return html.EscapeString(s) }
