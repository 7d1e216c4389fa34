package store

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// nullID stores a zero id as NULL (no such reference).
func nullID(id int64) any {
	if id == 0 {
		return nil
	}
	return id
}

// nullTime stores a nil time as NULL and any other in UTC.
func nullTime(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.UTC()
}

// timePtr reads a nullable time in UTC.
func timePtr(t sql.NullTime) *time.Time {
	if !t.Valid {
		return nil
	}
	u := t.Time.UTC()
	return &u
}

// encodeMap writes m as a JSON object, {} when empty, exactly as
// encoding/json does. Marshalling a string map cannot fail.
//
// The common map (a job event's from, state, attempt and code: a handful
// of plain ASCII keys and values) is written by hand, keys sorted as
// encoding/json sorts them: json.Marshal sorted them by reflection and was
// 2 % of the server's CPU in a fleet (an event a device message). Anything
// encoding/json would escape goes through it.
func encodeMap(m map[string]string) string {
	if len(m) == 0 {
		return "{}"
	}
	var small [8]string
	keys := small[:0]
	size := 1
	for k, v := range m {
		if !plainJSON(k) || !plainJSON(v) {
			b, _ := json.Marshal(m)
			return string(b)
		}
		keys = append(keys, k)
		size += len(k) + len(v) + 6 // "k":"v",
	}
	slices.Sort(keys)
	var b strings.Builder
	b.Grow(size)
	b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('"')
		b.WriteString(k)
		b.WriteString(`":"`)
		b.WriteString(m[k])
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String()
}

// plainJSON reports whether encoding/json writes s as it is between
// quotes: printable ASCII without a quote, a backslash or the characters
// it escapes for HTML (<, >, &).
func plainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c > 0x7e, c == '"', c == '\\', c == '<', c == '>', c == '&':
			return false
		}
	}
	return true
}

// encodeList writes l as a JSON array, [] when empty.
func encodeList(l []string) string {
	if len(l) == 0 {
		return "[]"
	}
	b, _ := json.Marshal(l)
	return string(b)
}

// decodeMap reads a JSON object column written by encodeMap.
func decodeMap(s string) (map[string]string, error) {
	m := map[string]string{}
	if s == "{}" {
		return m, nil // most events carry no data: skip the decoder
	}
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		return nil, fmt.Errorf("decode stored JSON object: %w", err)
	}
	return m, nil
}

// decodeList reads a JSON array column written by encodeList.
func decodeList(s string) ([]string, error) {
	l := []string{}
	if err := json.Unmarshal([]byte(s), &l); err != nil {
		return nil, fmt.Errorf("decode stored JSON array: %w", err)
	}
	return l, nil
}
