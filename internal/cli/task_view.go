package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/otter-ota/otter/client"
	"github.com/otter-ota/otter/internal/ota"
)

// barWidth is the number of cells in a task's progress bar.
const barWidth = 30

// maxShownKeys bounds the device keys a table cell lists.
const maxShownKeys = 10

// writeTask shows one task: what it installs where, its state and phase,
// every policy field that is set, its job counts and a progress bar.
func writeTask(w io.Writer, t *client.Task) error {
	fields := []field{
		{"id", strconv.FormatInt(t.ID, 10)},
		{"name", orDash(t.Name)},
		{"firmware", fmt.Sprintf("%d (%s/%s %s)", t.FirmwareID, t.Product, t.Module, t.Version)},
		{"mode", string(t.Mode) + verificationNote(t.Verification)},
		{"state", string(t.State) + reasonNote(t.Reason)},
	}
	if t.Waiting != nil {
		fields = append(fields, field{"waiting", t.Waiting.Message})
	}
	if len(t.Policy.Phases) > 0 {
		fields = append(fields, field{"phase", phaseLine(t)})
	}
	fields = append(fields, field{"target", formatTarget(t.Target)})
	fields = append(fields, policyFields(t.Policy)...)
	fields = append(fields, field{"jobs", formatCounts(t.Counts)})
	if n := t.Counts[client.JobAwaitingVersion]; n > 0 {
		fields = append(fields, field{"not reported", unreportedNote(n)})
	}
	if n := t.Counts[client.JobAwaitingInstall]; n > 0 {
		fields = append(fields, field{"confirming", fmt.Sprintf("%d downloaded, waiting for the device's local confirmation to install (otter task jobs %d --state %s)", n, t.ID, client.JobAwaitingInstall)})
	}
	fields = append(fields,
		field{"progress", progressLine(t)},
		field{"created", formatTime(t.CreatedAt) + " by " + orDash(t.CreatedBy)},
		field{"started", formatOptTime(t.StartedAt)},
		field{"ended", formatOptTime(t.EndedAt)},
	)
	return writeFields(w, fields)
}

// unreportedNote explains jobs awaiting their device's first version report.
func unreportedNote(n int64) string {
	verb := "have"
	if n == 1 {
		verb = "has"
	}
	return ota.Plural(n, "targeted device", "targeted devices") + " " + verb +
		" not reported a version yet: each job waits for the report, then proceeds or ends cancelled (version_not_eligible)"
}

func verificationNote(v bool) string {
	if v {
		return " (verification task)"
	}
	return ""
}

func reasonNote(reason string) string {
	if reason == "" {
		return ""
	}
	return " (" + reason + ")"
}

// phaseLine shows the phase released, e.g. "2 of 3 (10%)".
func phaseLine(t *client.Task) string {
	phases := t.Policy.Phases
	i := min(max(t.Phase-1, 0), len(phases)-1) // the API numbers phases from 1
	s := fmt.Sprintf("%d of %d (%s)", i+1, len(phases), formatPercent(phases[i]))
	if t.Policy.PhaseGate == "manual" && i < len(phases)-1 && !t.State.Terminal() {
		s += fmt.Sprintf(", manual gate: otter task advance %d", t.ID)
	}
	return s
}

func formatPercent(p float64) string { return strconv.FormatFloat(p, 'f', -1, 64) + "%" }

func formatPercents(ps []float64) string {
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = formatPercent(p)
	}
	return strings.Join(parts, ",")
}

// formatTarget says in words which devices a task selects.
func formatTarget(t client.Target) string {
	var parts []string
	add := func(cond bool, s string) {
		if cond {
			parts = append(parts, s)
		}
	}
	add(t.All, "all devices")
	add(len(t.Devices) > 0, fmt.Sprintf("%d listed devices (%s)", len(t.Devices), shortList(t.Devices)))
	add(len(t.Tags) > 0, "tags "+formatPairs(t.Tags))
	add(len(t.FromVersions) > 0, "from versions "+formatList(t.FromVersions))
	add(t.Percent > 0, formatPercent(t.Percent)+" sample")
	add(t.Dynamic, "dynamic (devices that come to match join)")
	add(t.SkipBusy, "busy devices skipped")
	return orDash(strings.Join(parts, "; "))
}

// shortList shows the first keys of a list and counts the rest.
func shortList(keys []string) string {
	if len(keys) <= maxShownKeys {
		return strings.Join(keys, ", ")
	}
	return strings.Join(keys[:maxShownKeys], ", ") + fmt.Sprintf(" and %d more", len(keys)-maxShownKeys)
}

// policyFields lists the policy fields that are set, each in words.
func policyFields(p client.Policy) []field {
	var out []field
	add := func(cond bool, name, value string) {
		if cond {
			out = append(out, field{name, value})
		}
	}
	add(p.Start != nil, "start", formatOptTime(p.Start))
	add(p.End != nil, "end", formatOptTime(p.End))
	if w := p.Window; w != nil {
		add(true, "window", strings.TrimSpace(w.Start+"-"+w.End+" "+w.TZ)+" daily")
	}
	add(p.Rate > 0, "rate", rateLine(p))
	add(p.MaxConcurrent > 0, "max concurrent", strconv.Itoa(p.MaxConcurrent)+" jobs in flight")
	add(len(p.Phases) > 0, "phases", formatPercents(p.Phases))
	add(p.PhaseSuccess > 0, "phase success", formatPercent(p.PhaseSuccess)+" succeeded before the next phase")
	add(p.PhaseGate != "", "phase gate", p.PhaseGate)
	add(p.Retries > 0, "retries", retryLine(p))
	add(p.Timeout > 0, "timeout", time.Duration(p.Timeout).String()+" per job")
	add(p.AbortFailure > 0, "abort", fmt.Sprintf("when %s of at least %d finished jobs failed", formatPercent(p.AbortFailure), p.AbortMin))
	add(p.Confirm != "" && p.Confirm != string(ota.ConfirmNone), "confirm", confirmLine(p.Confirm))
	return out
}

func confirmLine(mode string) string {
	switch ota.ConfirmMode(mode) {
	case ota.ConfirmDownload:
		return "download: devices confirm before downloading"
	case ota.ConfirmInstall:
		return "install: devices confirm after the download, before activating"
	case ota.ConfirmBoth:
		return "both: devices confirm before downloading and before activating"
	}
	return mode
}

func rateLine(p client.Policy) string {
	s := strconv.Itoa(p.Rate) + " jobs/min"
	if p.RateGrowth > 0 {
		s += fmt.Sprintf(", x%g every %d successes", p.RateGrowth, p.RateGrowthEvery)
	}
	return s
}

func retryLine(p client.Policy) string {
	s := strconv.Itoa(p.Retries)
	if p.RetryBackoff > 0 {
		s += ", backoff " + time.Duration(p.RetryBackoff).String() + " doubling"
	}
	if len(p.RetryOn) > 0 {
		s += ", on " + strings.Join(p.RetryOn, ",")
	}
	return s
}

// formatCounts lists the job counts in lifecycle order, e.g.
// "queued 3, downloading 1, succeeded 6".
func formatCounts(counts map[client.JobState]int64) string {
	var parts []string
	for _, s := range client.JobStates {
		if n := counts[s]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", s, n))
		}
	}
	return orDash(strings.Join(parts, ", "))
}

// progressLine draws a task's progress to be read at a glance:
// "[###############...............] 52% succeeded 5200/10000, failed 12".
func progressLine(t *client.Task) string {
	total := t.Total
	var sum int64
	for _, n := range t.Counts {
		sum += n
	}
	total = max(total, sum) // a dynamic task grows
	ok := t.Counts[client.JobSucceeded]
	pct, filled := int64(0), int64(0)
	if total > 0 {
		pct, filled = ok*100/total, ok*barWidth/total
	}
	bar := "[" + strings.Repeat("#", int(filled)) + strings.Repeat(".", barWidth-int(filled)) + "]"
	s := fmt.Sprintf("%s %d%% succeeded %d/%d, failed %d", bar, pct, ok, total,
		t.Counts[client.JobFailed]+t.Counts[client.JobTimedOut])
	for _, part := range []struct {
		name string
		n    int64
	}{{"rejected", t.Counts[client.JobRejected]}, {"cancelled", t.Counts[client.JobCancelled]},
		{"in flight", inFlight(t.Counts)}, {"queued", t.Counts[client.JobQueued]},
		{"awaiting version", t.Counts[client.JobAwaitingVersion]}} {
		if part.n > 0 {
			s += fmt.Sprintf(", %s %d", part.name, part.n)
		}
	}
	return s
}

func inFlight(counts map[client.JobState]int64) int64 {
	var n int64
	for s, c := range counts {
		if !s.Terminal() && s != client.JobQueued && s != client.JobAwaitingVersion {
			n += c
		}
	}
	return n
}

// watchLine is one line of `task watch` when the output is not a terminal,
// without its time.
func watchLine(t *client.Task) string {
	s := fmt.Sprintf("task %d %s", t.ID, t.State)
	if len(t.Policy.Phases) > 0 {
		s += ", phase " + phaseLine(t)
	}
	s += ": " + progressLine(t)
	if t.Waiting != nil {
		s += "; waiting: " + t.Waiting.Message
	}
	return s
}

func writeTaskList(w io.Writer, ts []client.Task, now time.Time) error {
	tb := newTable(w, "ID", "NAME", "FIRMWARE", "MODE", "STATE", "SUCCEEDED", "FAILED", "CREATED")
	for _, t := range ts {
		tb.row(strconv.FormatInt(t.ID, 10), orDash(t.Name), fmt.Sprintf("%s/%s %s", t.Product, t.Module, t.Version),
			string(t.Mode), string(t.State), fmt.Sprintf("%d/%d", t.Counts[client.JobSucceeded], t.Total),
			strconv.FormatInt(t.Counts[client.JobFailed]+t.Counts[client.JobTimedOut], 10), formatAge(t.CreatedAt, now))
	}
	return tb.flush()
}

// jobHeader is the header of job tables.
var jobHeader = []string{"ID", "DEVICE", "STATE", "PERCENT", "ATTEMPT", "CODE", "MESSAGE", "UPDATED"}

func jobRow(tb *table, j *client.Job, now time.Time) {
	tb.row(strconv.FormatInt(j.ID, 10), j.Device, string(j.State), strconv.Itoa(j.Percent)+"%",
		strconv.Itoa(j.Attempt), orDash(j.Code), orDash(j.Message), formatAge(j.UpdatedAt, now))
}

// writePreview shows a dry run: how many devices, per phase, which are
// busy, and the first devices in rollout order.
func writePreview(w io.Writer, p *client.TaskPreview, phases []float64) error {
	fields := []field{{"would target", ota.Plural(p.Total, "device", "devices")}}
	if len(p.PerPhase) > 0 {
		parts := make([]string, len(p.PerPhase))
		for i, n := range p.PerPhase {
			label := strconv.Itoa(i + 1)
			if i < len(phases) {
				label += " (" + formatPercent(phases[i]) + ")"
			}
			parts[i] = fmt.Sprintf("%s: %d", label, n)
		}
		fields = append(fields, field{"per phase", strings.Join(parts, ", ")})
	}
	if p.Unreported > 0 {
		fields = append(fields, field{"not reported", unreportedNote(int64(p.Unreported))})
	}
	if p.BusyTotal > 0 {
		fields = append(fields, field{"busy, left out", fmt.Sprintf("%d (%s)", p.BusyTotal, shortList(p.Busy))})
	}
	first := shortList(p.Devices[:min(len(p.Devices), maxShownKeys)])
	if more := p.Total - min(len(p.Devices), maxShownKeys); more > 0 {
		first += fmt.Sprintf(" and %d more", more)
	}
	fields = append(fields, field{"rollout order", orDash(first)})
	return writeFields(w, fields)
}

// jobStream writes jobs as they come: a JSON array written item by item, or
// a table flushed every page.
type jobStream struct {
	w    io.Writer
	json bool
	now  time.Time
	n    int
	tb   *table
}

func newJobStream(w io.Writer, asJSON bool, now time.Time) *jobStream {
	return &jobStream{w: w, json: asJSON, now: now}
}

func (s *jobStream) add(j *client.Job) error {
	defer func() { s.n++ }()
	if !s.json {
		if s.tb == nil {
			s.tb = newTable(s.w, jobHeader...)
		}
		jobRow(s.tb, j, s.now)
		if (s.n+1)%maxPageSize == 0 {
			return s.tb.flush()
		}
		return nil
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("  ", "  ")
	if err := enc.Encode(j); err != nil {
		return fmt.Errorf("write JSON: %w", err)
	}
	sep := ",\n  "
	if s.n == 0 {
		sep = "[\n  "
	}
	_, err := io.WriteString(s.w, sep+strings.TrimRight(b.String(), "\n"))
	return err
}

func (s *jobStream) close() error {
	switch {
	case s.json && s.n == 0:
		_, err := io.WriteString(s.w, "[]\n")
		return err
	case s.json:
		_, err := io.WriteString(s.w, "\n]\n")
		return err
	case s.tb == nil:
		s.tb = newTable(s.w, jobHeader...)
	}
	return s.tb.flush()
}

// writeJSONLine writes v as one compact line of JSON (a stream of values).
func writeJSONLine(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("write JSON: %w", err)
	}
	return nil
}
