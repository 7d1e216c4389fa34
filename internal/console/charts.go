package console

import (
	"cmp"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/store"
)

// Charts are server-rendered SVG: the Go code computes every rectangle and
// the templates only place them, so a chart needs no script and no style
// attribute (which the content security policy forbids).

// maxBars is how many versions a version chart shows before it sums the
// rest as "other".
const maxBars = 8

// barChart is the version distribution of one product's module.
type barChart struct {
	Product, Module string
	Total           int64
	Bars            []bar
	Height          int
}

// bar is one row of a bar chart; Width is a percentage of the widest bar.
type bar struct {
	Label string
	Count int64
	Share float64 // percentage of the total
	Width float64
	Y     int
	// W and TextX place the bar and its count, in SVG units.
	W, TextX float64
	// Version is the version a click on the row filters devices by; empty
	// for "other".
	Version string
	// Link lists the devices on this version; empty for "other".
	Link string
}

// Bar chart geometry, in SVG units: labels on the left, bars after them.
const (
	barRow    = 26
	barStart  = 150.0
	barLength = 330.0
)

// versionCharts groups version counts (ordered by product and module) into
// one chart per product and module, largest versions first.
func versionCharts(counts []store.VersionCount) []barChart {
	var charts []barChart
	for i := 0; i < len(counts); {
		j := i
		for j < len(counts) && counts[j].Product == counts[i].Product && counts[j].Module == counts[i].Module {
			j++
		}
		charts = append(charts, newBarChart(counts[i:j]))
		i = j
	}
	return charts
}

func newBarChart(group []store.VersionCount) barChart {
	group = slices.Clone(group)
	slices.SortStableFunc(group, func(a, b store.VersionCount) int {
		return cmp.Or(cmp.Compare(b.Devices, a.Devices), versionOrder(b.Version, a.Version))
	})
	ch := barChart{Product: group[0].Product, Module: group[0].Module}
	var other int64
	for i, v := range group {
		ch.Total += v.Devices
		if i < maxBars {
			ch.Bars = append(ch.Bars, bar{Label: v.Version, Version: v.Version, Count: v.Devices})
		} else {
			other += v.Devices
		}
	}
	if other > 0 {
		ch.Bars = append(ch.Bars, bar{Label: "other", Count: other})
	}
	scaleBars(&ch)
	return ch
}

// versionOrder orders versions by precedence where both parse, by text
// otherwise, so that equal counts still list in a stable order.
func versionOrder(a, b string) int {
	if c, err := ota.CompareVersions(a, b); err == nil {
		return c
	}
	return cmp.Compare(a, b)
}

func scaleBars(ch *barChart) {
	var widest int64
	for _, b := range ch.Bars {
		widest = max(widest, b.Count)
	}
	for i := range ch.Bars {
		b := &ch.Bars[i]
		b.Share = percent(b.Count, ch.Total)
		b.Width = percent(b.Count, widest)
		b.Y = i * barRow
		b.W = max(b.Width*barLength/100, 1)
		b.TextX = barStart + b.W + 8
		if b.Version != "" {
			b.Link = "/products/" + url.PathEscape(ch.Product) + "?" +
				url.Values{"module": {ch.Module}, "version": {b.Version}}.Encode()
		}
	}
	ch.Height = len(ch.Bars) * barRow
}

// segment is one part of a task's stacked progress bar; X and W are
// percentages of the bar.
type segment struct {
	Class string
	Label string
	N     int64
	X, W  float64
}

// progress splits a task's jobs into succeeded, failed, other endings, in
// flight, queued and awaiting their device's version, for its progress bar.
func progress(t ota.Task) []segment {
	c := t.Counts
	var inFlight int64
	for s, n := range c {
		if s.InFlight() {
			inFlight += n
		}
	}
	parts := []segment{
		{Class: "ok", Label: "succeeded", N: c[ota.JobSucceeded]},
		{Class: "bad", Label: "failed", N: c[ota.JobFailed] + c[ota.JobTimedOut]},
		{Class: "warn", Label: "rejected or cancelled", N: c[ota.JobRejected] + c[ota.JobCancelled]},
		{Class: "busy", Label: "in flight", N: inFlight},
		{Class: "idle", Label: "queued", N: c[ota.JobQueued]},
		{Class: "idle", Label: "awaiting version", N: c[ota.JobAwaitingVersion]},
	}
	// Total is exact; the sum guards against a dynamic task's new jobs.
	total := t.Total
	var sum int64
	for _, p := range parts {
		sum += p.N
	}
	total = max(total, sum)
	x := 0.0
	for i := range parts {
		parts[i].X = x
		parts[i].W = percent(parts[i].N, total)
		x += parts[i].W
	}
	return parts
}

// timeline is a task's progress over time: cumulative succeeded, failed
// and in flight (started less ended) jobs, one point per step, with the
// step chosen for the task's duration so that the chart has up to
// maxPoints points (a 15 s rollout gets one a second, a 15 day one one
// every two hours).
type timeline struct {
	Points   []timePoint
	Step     time.Duration
	Max      int64
	From, To time.Time
	// Succeeded, Failed and InFlight are SVG polyline points.
	Succeeded, Failed, InFlight string
}

// timePoint is the state of a task at the end of one step.
type timePoint struct {
	At                                   time.Time
	Started, Succeeded, Failed, InFlight int64
	NewStarted, NewSucceeded, NewFailed  int64
}

// Timeline chart geometry, in SVG units.
const (
	chartWidth  = 600.0
	chartHeight = 160.0
	maxPoints   = 200
)

// steps are the chart's resolutions, finest first.
var steps = []time.Duration{
	time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 15 * time.Second, 30 * time.Second,
	time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute,
	time.Hour, 2 * time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour,
}

// chooseStep is the finest step, no finer than res, that covers start to
// end in at most maxPoints points.
func chooseStep(start, end time.Time, res time.Duration) time.Duration {
	for _, s := range steps {
		if s >= res && int(end.Sub(start)/s)+1 <= maxPoints {
			return s
		}
	}
	return steps[len(steps)-1]
}

// newTimeline sums timeline points of resolution res (a second or a
// minute, oldest first) from the task's start to end (now for a task
// still running) into cumulative points.
func newTimeline(points []ota.TimelinePoint, start, end time.Time, res time.Duration) timeline {
	start, end = start.UTC().Truncate(res), end.UTC()
	if end.Before(start) {
		end = start
	}
	step := chooseStep(start, end, res)
	start = start.Truncate(step)
	n := int(end.Sub(start)/step) + 1
	tl := timeline{Step: step, From: start, To: start.Add(time.Duration(n) * step), Points: make([]timePoint, n)}
	for _, p := range points {
		i := max(0, int(p.Minute.Sub(start)/step))
		if i < n {
			tl.Points[i].NewStarted += p.Started
			tl.Points[i].NewSucceeded += p.Succeeded
			tl.Points[i].NewFailed += p.Failed
		}
	}
	var prev timePoint
	for i := range tl.Points {
		p := &tl.Points[i]
		p.At = start.Add(time.Duration(i+1) * step)
		p.Started, p.Succeeded, p.Failed = prev.Started+p.NewStarted, prev.Succeeded+p.NewSucceeded, prev.Failed+p.NewFailed
		p.InFlight = max(0, p.Started-p.Succeeded-p.Failed)
		tl.Max = max(tl.Max, p.Succeeded, p.Failed, p.InFlight)
		prev = *p
	}
	tl.draw()
	return tl
}

// draw computes the polylines: x across the chart, y up from its bottom,
// from zero at the start to each step's end.
func (tl *timeline) draw() {
	var ok, bad, busy strings.Builder
	for _, b := range []*strings.Builder{&ok, &bad, &busy} {
		fmt.Fprintf(b, "0.0,%.1f ", chartHeight)
	}
	for i, p := range tl.Points {
		x := float64(i+1) * chartWidth / float64(len(tl.Points))
		for _, l := range []struct {
			b *strings.Builder
			v int64
		}{{&ok, p.Succeeded}, {&bad, p.Failed}, {&busy, p.InFlight}} {
			y := chartHeight
			if tl.Max > 0 {
				y -= float64(l.v) * chartHeight / float64(tl.Max)
			}
			fmt.Fprintf(l.b, "%.1f,%.1f ", x, y)
		}
	}
	tl.Succeeded, tl.Failed, tl.InFlight = ok.String(), bad.String(), busy.String()
}

// StepText names the step for people: "1s", "2m", "6h".
func (tl timeline) StepText() string {
	switch {
	case tl.Step < time.Minute:
		return fmt.Sprintf("%ds", tl.Step/time.Second)
	case tl.Step < time.Hour:
		return fmt.Sprintf("%dm", tl.Step/time.Minute)
	}
	return fmt.Sprintf("%dh", tl.Step/time.Hour)
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
