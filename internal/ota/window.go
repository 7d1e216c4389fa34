package ota

import (
	"fmt"
	"strings"
	"time"
)

// ParseWindow parses an operator's daily window "HH:MM-HH:MM" (24-hour
// clock; an end before the start crosses midnight) in time zone tz ("" is
// UTC). It reads tzdata through time.LoadLocation to check tz.
func ParseWindow(s, tz string) (Window, error) {
	start, end, ok := strings.Cut(strings.TrimSpace(s), "-")
	if !ok {
		return Window{}, Errorf(EINVALID, "window %s: use HH:MM-HH:MM, e.g. 01:00-05:00", quoteInput(s))
	}
	w := Window{Start: strings.TrimSpace(start), End: strings.TrimSpace(end), TZ: strings.TrimSpace(tz)}
	if err := w.Validate(); err != nil {
		return Window{}, err
	}
	return w, nil
}

// String returns the window as ParseWindow reads it, followed by its time
// zone when it has one: "01:00-05:00 Europe/Paris".
func (w Window) String() string {
	if w.TZ == "" {
		return w.Start + "-" + w.End
	}
	return w.Start + "-" + w.End + " " + w.TZ
}

// Validate checks the window's clock times and time zone (through
// time.LoadLocation, which reads tzdata), and reports every problem.
func (w Window) Validate() error { return invalid(w.problems("window")) }

// problems lists what is wrong with the window, each problem under the path
// of its field below at ("policy.window.start", ...).
func (w Window) problems(at string) []FieldError {
	var out []FieldError
	start, errS := parseClock(w.Start, "start")
	if errS != nil {
		out = append(out, fieldError(at+".start", errS))
	}
	end, errE := parseClock(w.End, "end")
	if errE != nil {
		out = append(out, fieldError(at+".end", errE))
	}
	if errS == nil && errE == nil && start == end {
		out = append(out, FieldError{at, fmt.Sprintf("window %s-%s is empty: start and end are equal; omit the window to allow any time", w.Start, w.End)})
	}
	if _, err := w.Location(); err != nil {
		out = append(out, fieldError(at+".tz", err))
	}
	return out
}

// Location resolves the window's time zone ("" is UTC) with
// time.LoadLocation. "Local" is refused: it would depend on the server.
func (w Window) Location() (*time.Location, error) {
	if w.TZ == "Local" {
		return nil, Errorf(EINVALID, `time zone "Local" depends on the server: name a zone such as Europe/Paris or UTC`)
	}
	loc, err := time.LoadLocation(w.TZ)
	if err != nil {
		return nil, Errorf(EINVALID, "unknown time zone %s: use an IANA name such as Europe/Paris, America/New_York or UTC", quoteInput(w.TZ))
	}
	return loc, nil
}

// parseClock returns the minute of the day of "HH:MM".
func parseClock(s, which string) (int, error) {
	if len(s) != 5 || s[2] != ':' || !isDigits(s[:2]) || !isDigits(s[3:]) {
		return 0, Errorf(EINVALID, "window %s %s is not HH:MM (24-hour clock, e.g. 01:00 or 23:30)", which, quoteInput(s))
	}
	h := int(s[0]-'0')*10 + int(s[1]-'0')
	m := int(s[3]-'0')*10 + int(s[4]-'0')
	if h > 23 || m > 59 {
		return 0, Errorf(EINVALID, "window %s %q is not a time of day: hours go to 23, minutes to 59", which, s)
	}
	return h*60 + m, nil
}

// minutes returns the window's start and end minutes of the day; an invalid
// window (refused by Validate) yields an empty one.
func (w Window) minutes() (start, end int) {
	start, errS := parseClock(w.Start, "start")
	end, errE := parseClock(w.End, "end")
	if errS != nil || errE != nil {
		return 0, 0
	}
	return start, end
}

// Contains reports whether the wall clock at t in loc (nil: UTC) is inside
// the window: at or after the start and before the end. On a day when
// clocks skip the start (daylight saving), the window opens with the jump.
func (w Window) Contains(t time.Time, loc *time.Location) bool {
	if loc == nil {
		loc = time.UTC
	}
	start, end := w.minutes()
	lt := t.In(loc)
	m := lt.Hour()*60 + lt.Minute()
	if start <= end {
		return start <= m && m < end
	}
	return m >= start || m < end // crosses midnight
}

// NextOpen returns t when the window contains t, otherwise the first later
// instant it does, in loc (nil: UTC). Daylight saving days are handled: the
// opening may come with a clock jump, and a window that falls wholly in a
// skipped hour opens the next day. It returns the zero time for a window
// that never opens (only an invalid one).
func (w Window) NextOpen(t time.Time, loc *time.Location) time.Time {
	if loc == nil {
		loc = time.UTC
	}
	if w.Contains(t, loc) {
		return t
	}
	start, _ := w.minutes()
	horizon := t.Add(50 * time.Hour) // a day, plus margin for any zone jump
	for seg := t; seg.Before(horizon); {
		if next, ok := w.openingIn(seg, t, start, loc); ok {
			return next
		}
		seg = segmentEnd(seg, loc, horizon)
	}
	return time.Time{}
}

// openingIn finds the window's opening within the zone segment (a span of
// constant UTC offset) that begins at seg: either the segment's start
// itself (a clock jump into the window) or the first time the wall clock
// reaches the window's start.
func (w Window) openingIn(seg, after time.Time, start int, loc *time.Location) (time.Time, bool) {
	if seg.After(after) && w.Contains(seg, loc) {
		return seg, true
	}
	lt := seg.In(loc)
	sinceMidnight := time.Duration(lt.Hour())*time.Hour + time.Duration(lt.Minute())*time.Minute +
		time.Duration(lt.Second())*time.Second + time.Duration(lt.Nanosecond())
	delta := (time.Duration(start)*time.Minute - sinceMidnight + 24*time.Hour) % (24 * time.Hour)
	c := seg.Add(delta)
	_, segEnd := lt.ZoneBounds()
	if (segEnd.IsZero() || c.Before(segEnd)) && c.After(after) && w.Contains(c, loc) {
		return c, true
	}
	return time.Time{}, false
}

// segmentEnd returns the end of the zone segment holding seg, bounded by
// horizon.
func segmentEnd(seg time.Time, loc *time.Location, horizon time.Time) time.Time {
	_, end := seg.In(loc).ZoneBounds()
	if end.IsZero() || end.After(horizon) || !end.After(seg) {
		return horizon
	}
	return end
}
