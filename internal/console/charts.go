package console

import (
	"cmp"
	"net/url"
	"slices"
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

// timeline is a task's activity over time as grouped bars: started,
// succeeded and failed jobs per bin of one or more minutes.
type timeline struct {
	Bins       []timeBin
	Max        int64
	BinMinutes int
	From, To   time.Time
	BarWidth   float64
	// EndX is where the last column ends, in SVG units.
	EndX float64
}

// timeBin is one column of the timeline; heights are in SVG units.
type timeBin struct {
	ota.TimelinePoint
	X                           float64
	HStarted, HSucceeded, HFail float64
}

// Timeline chart geometry, in SVG units.
const (
	chartWidth  = 600.0
	chartHeight = 160.0
	maxBins     = 60
	maxSlot     = 48.0
)

// newTimeline bins per-minute points (oldest first) from the task's start
// to end (the last point, or now for a task still running) into at most
// maxBins columns, with empty minutes as zeros.
func newTimeline(points []ota.TimelinePoint, start, end time.Time) timeline {
	start, end = start.UTC().Truncate(time.Minute), end.UTC().Truncate(time.Minute)
	if len(points) > 0 {
		start = minTime(start, points[0].Minute)
		end = maxTime(end, points[len(points)-1].Minute)
	}
	if end.Before(start) {
		end = start
	}
	minutes := int(end.Sub(start)/time.Minute) + 1
	binMin := (minutes + maxBins - 1) / maxBins
	tl := timeline{BinMinutes: binMin, From: start, To: end.Add(time.Minute)}
	tl.Bins = make([]timeBin, (minutes+binMin-1)/binMin)
	for i := range tl.Bins {
		tl.Bins[i].Minute = start.Add(time.Duration(i*binMin) * time.Minute)
	}
	for _, p := range points {
		i := int(p.Minute.Sub(start)/time.Minute) / binMin
		if i >= 0 && i < len(tl.Bins) {
			b := &tl.Bins[i]
			b.Started += p.Started
			b.Succeeded += p.Succeeded
			b.Failed += p.Failed
		}
	}
	tl.scale()
	return tl
}

func (tl *timeline) scale() {
	for _, b := range tl.Bins {
		tl.Max = max(tl.Max, b.Started, b.Succeeded, b.Failed)
	}
	// A short task keeps narrow columns rather than a few wide blocks.
	slot := min(chartWidth/float64(len(tl.Bins)), maxSlot)
	tl.BarWidth = slot / 3 * 0.9
	tl.EndX = slot * float64(len(tl.Bins))
	h := func(v int64) float64 {
		if tl.Max == 0 {
			return 0
		}
		return float64(v) * chartHeight / float64(tl.Max)
	}
	for i := range tl.Bins {
		b := &tl.Bins[i]
		b.X = float64(i) * slot
		b.HStarted, b.HSucceeded, b.HFail = h(b.Started), h(b.Succeeded), h(b.Failed)
	}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
