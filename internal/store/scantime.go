package store

import (
	"fmt"
	"strings"
	"time"
)

// SQLite keeps times as text. The driver turns a TIMESTAMP column into a
// time.Time by trying time.Parse with one layout that never matches ours,
// then with the right one: about a third of the CPU of a page of 100 jobs,
// with six times a row. The lists read their rows packed into one text
// (packColumns), times included, and dbTime parses that text directly.

// dbTime scans a nullable time delivered as a time.Time (PostgreSQL, and
// SQLite columns read directly) or as SQLite's text (packed rows).
type dbTime struct {
	Time  time.Time
	Valid bool
}

// Scan implements sql.Scanner.
func (t *dbTime) Scan(src any) error {
	var err error
	switch v := src.(type) {
	case nil:
		*t = dbTime{}
		return nil
	case time.Time:
		t.Time = v
	case string:
		t.Time, err = parseTextTime(v)
	case []byte:
		t.Time, err = parseTextTime(string(v))
	default:
		return fmt.Errorf("store: cannot read %T as a time", src)
	}
	t.Valid = err == nil
	return err
}

// ptr returns the time in UTC, nil when it is NULL.
func (t dbTime) ptr() *time.Time {
	if !t.Valid {
		return nil
	}
	u := t.Time.UTC()
	return &u
}

// textTimeLayouts are the layouts the SQLite driver reads, in its order.
var textTimeLayouts = []string{
	"2006-01-02 15:04:05.999999999-07:00",
	"2006-01-02T15:04:05.999999999-07:00",
	"2006-01-02 15:04:05.999999999",
	"2006-01-02T15:04:05.999999999",
	"2006-01-02 15:04",
	"2006-01-02T15:04",
	"2006-01-02",
}

// parseTextTime reads a time as the SQLite driver writes it
// ("2006-01-02 15:04:05.999999999-07:00") without allocating, and any other
// text as the driver would.
func parseTextTime(s string) (time.Time, error) {
	if t, ok := parseSQLiteTime(s); ok {
		return t, nil
	}
	ts, utc := strings.CutSuffix(s, "Z")
	for _, layout := range textTimeLayouts {
		if t, err := time.Parse(layout, ts); err == nil {
			if utc {
				t = t.UTC()
			}
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("store: unrecognized time %q", s)
}

// parseSQLiteTime reads "YYYY-MM-DD HH:MM:SS[.fraction](+|-)HH:MM" (or a
// trailing Z); ok is false for anything else.
func parseSQLiteTime(s string) (time.Time, bool) {
	if len(s) < 20 || s[4] != '-' || s[7] != '-' || (s[10] != ' ' && s[10] != 'T') || s[13] != ':' || s[16] != ':' {
		return time.Time{}, false
	}
	year, month, day, hour, minute, sec := digits(s[0:4]), digits(s[5:7]), digits(s[8:10]), digits(s[11:13]), digits(s[14:16]), digits(s[17:19])
	if year < 0 || month < 1 || month > 12 || day < 1 || day > 31 || hour < 0 || hour > 23 || minute < 0 || minute > 59 || sec < 0 || sec > 59 {
		return time.Time{}, false
	}
	nsec, rest, ok := fraction(s[19:])
	if !ok {
		return time.Time{}, false
	}
	offset, ok := zoneOffset(rest)
	if !ok {
		return time.Time{}, false
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC)
	if t.Day() != day {
		return time.Time{}, false // no such day, e.g. February 30
	}
	return t.Add(-time.Duration(offset) * time.Second), true
}

// digits reads a run of decimal digits, -1 when any is not one.
func digits(s string) int {
	v := 0
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return -1
		}
		v = v*10 + int(c-'0')
	}
	return v
}

// fraction reads an optional ".ddddddddd" (1 to 9 digits) as nanoseconds
// and returns what follows it.
func fraction(s string) (nsec int, rest string, ok bool) {
	if s == "" || s[0] != '.' {
		return 0, s, true
	}
	n := 0
	for n+1 < len(s) && s[n+1] >= '0' && s[n+1] <= '9' {
		n++
	}
	if n == 0 || n > 9 {
		return 0, s, false
	}
	nsec = digits(s[1 : 1+n])
	for range 9 - n {
		nsec *= 10
	}
	return nsec, s[1+n:], true
}

// zoneOffset reads "Z" or "+hh:mm"/"-hh:mm" as seconds east of UTC.
func zoneOffset(s string) (int, bool) {
	if s == "Z" {
		return 0, true
	}
	if len(s) != 6 || (s[0] != '+' && s[0] != '-') || s[3] != ':' {
		return 0, false
	}
	oh, om := digits(s[1:3]), digits(s[4:6])
	if oh < 0 || om < 0 || oh > 23 || om > 59 {
		return 0, false
	}
	offset := (oh*60 + om) * 60
	if s[0] == '-' {
		offset = -offset
	}
	return offset, true
}
