package console

import (
	"fmt"
	"html/template"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/sdk/wire"
)

// funcs are the helpers templates may call.
func (p *pages) funcs() template.FuncMap {
	return template.FuncMap{
		"asset":      func(name string) string { return p.assets[name] },
		"when":       when,
		"whenp":      whenp,
		"iso":        func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"bytes":      humanBytes,
		"count":      countAny,
		"counted":    counted,
		"pct":        percent,
		"editFields": func() []editField { return editFields },
		"join":       strings.Join,
		"kvs":        kvs,
		"tagText":    tagText,
		"stateClass": stateClass,
		"jobStates":  func() []ota.JobState { return ota.JobStates },
		"taskStates": func() []ota.TaskState { return ota.TaskStates },
		"add":        func(a, b int) int { return a + b },
		"chartY":     func(h float64) float64 { return chartHeight - h },
		"twice":      func(w float64) float64 { return 2 * w },
		"dur":        func(d ota.Duration) string { return durationText(d) },
		"keyRule":    func() string { return wire.KeyRule },
		"keyPattern": func() string { return wire.KeyPattern },
	}
}

// when formats a time for people, in UTC so that every operator reads the
// same clock.
func when(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

func whenp(t *time.Time) string {
	if t == nil {
		return "never"
	}
	return when(*t)
}

func durationText(d ota.Duration) string {
	if d == 0 {
		return ""
	}
	return time.Duration(d).String()
}

// humanBytes formats a size with binary units: 1.5 MiB.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// countAny formats any integer as humanCount does.
func countAny(v any) string {
	switch n := v.(type) {
	case int:
		return humanCount(int64(n))
	case int64:
		return humanCount(n)
	}
	return fmt.Sprint(v)
}

// counted writes a count and the noun in the right number: "1 device",
// "1,200 devices".
func counted(v any, one, many string) string {
	s := countAny(v)
	if s == "1" {
		return s + " " + one
	}
	return s + " " + many
}

// humanCount writes a count with thousands separators: 1,000,000.
func humanCount(n int64) string {
	s := fmt.Sprint(n)
	if n < 0 {
		return "-" + humanCount(-n)
	}
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// percent is part of total as a percentage, 0 for an empty total.
func percent(part, total int64) float64 {
	if total <= 0 {
		return 0
	}
	return float64(part) * 100 / float64(total)
}

// kv is one entry of a map, for templates that list maps in order.
type kv struct{ Key, Value string }

func kvs(m map[string]string) []kv {
	out := make([]kv, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, kv{k, m[k]})
	}
	return out
}

// tagText writes tags one per line as name=value, the way the tag form
// reads them.
func tagText(m map[string]string) string {
	var b strings.Builder
	for _, e := range kvs(m) {
		b.WriteString(e.Key + "=" + e.Value + "\n")
	}
	return b.String()
}

// stateClass names the colour of a job or task state.
func stateClass(state string) string {
	switch state {
	case string(ota.JobSucceeded), string(ota.TaskCompleted):
		return "ok"
	case string(ota.JobFailed), string(ota.JobTimedOut), string(ota.TaskAborted):
		return "bad"
	case string(ota.JobRejected), string(ota.JobCancelled), string(ota.TaskPaused):
		return "warn"
	case string(ota.JobQueued), string(ota.JobAwaitingVersion), string(ota.JobAwaitingInstall), string(ota.TaskScheduled):
		return "idle"
	}
	return "busy"
}
