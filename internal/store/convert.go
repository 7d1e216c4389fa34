package store

import (
	"database/sql"
	"encoding/json"
	"fmt"
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

// encodeMap writes m as a JSON object, {} when empty. Marshalling a string
// map cannot fail.
func encodeMap(m map[string]string) string {
	if len(m) == 0 {
		return "{}"
	}
	b, _ := json.Marshal(m)
	return string(b)
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
