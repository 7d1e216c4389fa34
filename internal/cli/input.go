package cli

import (
	"maps"
	"strconv"
	"strings"
	"time"
)

// parsePairs reads "key=value" arguments (of --tag or --param, named by
// flag) into a map. The value may contain "=" and may be empty; the key may
// not. Giving a key twice is a mistake, not a silent override.
func parsePairs(flag string, args []string) (map[string]string, error) {
	m := make(map[string]string, len(args))
	for _, arg := range args {
		k, v, ok := strings.Cut(arg, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, usageErrorf("%s %q: want key=value", flag, arg)
		}
		if _, dup := m[k]; dup {
			return nil, usageErrorf("%s %q: key %q is given twice", flag, arg, k)
		}
		m[k] = v
	}
	return m, nil
}

// tagEdits is what `device tag` changes: tags to set and tags to remove.
type tagEdits struct {
	set    map[string]string
	remove []string
}

// parseTagEdits reads `device tag` arguments: "k=v" sets tag k, "k-"
// removes it. A key both set and removed is a mistake.
func parseTagEdits(args []string) (tagEdits, error) {
	e := tagEdits{set: map[string]string{}}
	seen := map[string]bool{}
	for _, arg := range args {
		k, v, isSet := strings.Cut(arg, "=")
		if !isSet {
			var isRemove bool
			if k, isRemove = strings.CutSuffix(arg, "-"); !isRemove {
				return tagEdits{}, usageErrorf("tag edit %q: want key=value to set a tag or key- to remove it", arg)
			}
		}
		if strings.TrimSpace(k) == "" {
			return tagEdits{}, usageErrorf("tag edit %q: the tag key is empty", arg)
		}
		if seen[k] {
			return tagEdits{}, usageErrorf("tag edit %q: tag %q is changed twice", arg, k)
		}
		seen[k] = true
		if isSet {
			e.set[k] = v
		} else {
			e.remove = append(e.remove, k)
		}
	}
	return e, nil
}

// apply returns the tags that result from applying e to current; current is
// not changed. Removing a tag that is not there is not an error: the
// outcome is what the operator asked for.
func (e tagEdits) apply(current map[string]string) map[string]string {
	out := maps.Clone(current)
	if out == nil {
		out = map[string]string{}
	}
	maps.Copy(out, e.set)
	for _, k := range e.remove {
		delete(out, k)
	}
	return out
}

// parseOptBool reads a flag that is true, false or not given ("").
func parseOptBool(flag, s string) (*bool, error) {
	if s == "" {
		return nil, nil
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return nil, usageErrorf("%s %q: want true or false", flag, s)
	}
	return &b, nil
}

// parseTime reads a point in time given as RFC 3339, as a date (midnight
// UTC), or as an age relative to now: a Go duration ("90m", "1h30m") or a
// number of days ("7d").
func parseTime(flag, s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	if age, ok := parseAge(s); ok {
		return now.Add(-age), nil
	}
	return time.Time{}, usageErrorf("%s %q: want a time (2026-01-02T15:04:05Z or 2026-01-02) or an age (90m, 2h, 7d)", flag, s)
}

// maxAge keeps an age from overflowing time.Duration.
const maxAge = 100 * 365 * 24 * time.Hour

func parseAge(s string) (time.Duration, bool) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseUint(days, 10, 16)
		if err != nil {
			return 0, false
		}
		return min(time.Duration(n)*24*time.Hour, maxAge), true
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, false
	}
	return min(d, maxAge), true
}

// parseID reads a positive numeric id (of a firmware, token, task).
func parseID(what, s string) (int64, error) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 {
		return 0, usageErrorf("%s id %q: want a positive number", what, s)
	}
	return id, nil
}

// checkLimit refuses a negative --limit; 0 means no limit.
func checkLimit(n int) error {
	if n < 0 {
		return usageErrorf("--limit %d: want 0 (no limit) or more", n)
	}
	return nil
}
