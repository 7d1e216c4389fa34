package store

import (
	"fmt"
	"strings"
	"time"
)

// SQLite keeps times as text. The driver turns a TIMESTAMP column into a
// time.Time by trying time.Parse with one layout that never matches ours,
// then with the right one: about a third of the CPU of a page of 100 jobs,
// with six times a row. The list queries read their time columns as an
// expression (+column), which SQLite returns as plain text, and dbTime
// parses that text directly.

// textTimes returns the column list cols with the named time columns read
// as text on SQLite: a unary plus changes no value but leaves the result
// without the declared type the driver parses by.
func textTimes(cols string, timeCols ...string) string {
	for _, c := range timeCols {
		if strings.Count(cols, c) != 1 {
			panic("store: textTimes: " + c + " is not one column of " + cols)
		}
		cols = strings.Replace(cols, c, "+"+c, 1)
	}
	return cols
}

// dbTime scans a nullable time delivered as a time.Time (PostgreSQL, and
// SQLite columns read directly) or as SQLite's text (columns read through
// textTimes).
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
	num := func(i, n int) int {
		v := 0
		for _, c := range []byte(s[i : i+n]) {
			if c < '0' || c > '9' {
				return -1
			}
			v = v*10 + int(c-'0')
		}
		return v
	}
	year, month, day, hour, minute, sec := num(0, 4), num(5, 2), num(8, 2), num(11, 2), num(14, 2), num(17, 2)
	if year < 0 || month < 1 || month > 12 || day < 1 || day > 31 || hour < 0 || hour > 23 || minute < 0 || minute > 59 || sec < 0 || sec > 59 {
		return time.Time{}, false
	}
	rest := s[19:]
	nsec := 0
	if rest[0] == '.' {
		digits := 0
		for digits+1 < len(rest) && rest[digits+1] >= '0' && rest[digits+1] <= '9' {
			digits++
		}
		if digits == 0 || digits > 9 {
			return time.Time{}, false
		}
		nsec = num(20, digits)
		for range 9 - digits {
			nsec *= 10
		}
		rest = rest[1+digits:]
	}
	offset := 0
	switch {
	case rest == "Z":
	case len(rest) == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':':
		oh, om := num(len(s)-5, 2), num(len(s)-2, 2)
		if oh < 0 || om < 0 || oh > 23 || om > 59 {
			return time.Time{}, false
		}
		offset = (oh*60 + om) * 60
		if rest[0] == '-' {
			offset = -offset
		}
	default:
		return time.Time{}, false
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC)
	if t.Day() != day {
		return time.Time{}, false // no such day, e.g. February 30
	}
	return t.Add(-time.Duration(offset) * time.Second), true
}
