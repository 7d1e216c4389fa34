package cli

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// render writes v as one JSON value with -o json, and through table
// otherwise.
func (a *app) render(v any, table func(w io.Writer) error) error {
	if a.output == "json" {
		return writeJSON(a.env.Stdout, v)
	}
	return table(a.env.Stdout)
}

// writeJSON writes v indented, without HTML escaping (people read it).
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("write JSON: %w", err)
	}
	return nil
}

// table writes rows of tab-separated cells as aligned columns.
type table struct {
	tw *tabwriter.Writer
}

func newTable(w io.Writer, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)}
	t.row(header...)
	return t
}

// row adds one row; cells lose tabs and line breaks that would break the
// columns.
func (t *table) row(cells ...string) {
	for i, c := range cells {
		cells[i] = oneLine(c)
	}
	fmt.Fprintln(t.tw, strings.Join(cells, "\t"))
}

func (t *table) flush() error {
	if err := t.tw.Flush(); err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	return nil
}

// field is one line of an object shown as "name: value".
type field struct{ name, value string }

// writeFields shows one object as aligned "name: value" lines.
func writeFields(w io.Writer, fields []field) error {
	tw := tabwriter.NewWriter(w, 0, 4, 1, ' ', 0)
	for _, f := range fields {
		fmt.Fprintf(tw, "%s:\t%s\n", f.name, oneLine(f.value))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write fields: %w", err)
	}
	return nil
}

var lineBreaks = strings.NewReplacer("\t", " ", "\r\n", " ", "\n", " ", "\r", " ")

func oneLine(s string) string { return lineBreaks.Replace(s) }

// formatAge shows how long ago t was, coarsely; old times show as a date.
func formatAge(t, now time.Time) string {
	d := now.Sub(t)
	switch {
	case d < time.Second:
		return "just now" // includes small clock skew into the future
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d/time.Hour))
	case d < 60*24*time.Hour:
		return fmt.Sprintf("%dd ago", int(d/(24*time.Hour)))
	}
	return t.UTC().Format(time.DateOnly)
}

// formatOptAge is formatAge for an optional time; none shows as "never".
func formatOptAge(t *time.Time, now time.Time) string {
	if t == nil || t.IsZero() {
		return "never"
	}
	return formatAge(*t, now)
}

// formatTime shows an exact time, in UTC so that outputs compare.
func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// formatOptTime is formatTime for an optional time.
func formatOptTime(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return formatTime(*t)
}

// formatPairs shows a map as "k=v,k=v" sorted by key, or "-" when empty.
func formatPairs(m map[string]string) string {
	if len(m) == 0 {
		return "-"
	}
	parts := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, ",")
}

// formatList shows a list as "a,b", or "-" when empty.
func formatList(s []string) string {
	if len(s) == 0 {
		return "-"
	}
	return strings.Join(s, ",")
}

// formatSize shows a byte count in binary units, exact below 1 KiB.
func formatSize(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	v, exp := float64(n)/unit, 0
	for v >= unit && exp < 5 {
		v /= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMGTPE"[exp])
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// orDash shows an empty string as "-", so that table columns stay aligned
// and readable.
func orDash(s string) string {
	return cmp.Or(s, "-")
}
