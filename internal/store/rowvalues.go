package store

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// rowValues reads a row's columns as the driver delivers them into one
// array reused for every row of a query. Scanning into typed fields made
// database/sql convert each value by reflection (an int column into an
// int field through its decimal text, a named string type by
// reflect.Value.Set) and allocated the row's struct and times for each
// row: a third of the CPU of a page of a list. Reading the values as they
// are costs neither; the accessors convert what both drivers deliver and
// keep the first error, as Scan would have failed on it.
type rowValues struct {
	v    []any
	dest []any // &v[i]
	err  error
	// packed rows (SQLite's lists, see packColumns) arrive in v[0] and are
	// split into f, with null telling NULL from empty.
	packed bool
	text   []bool
	f      []string
	null   []bool
}

func newRowValues(n int) *rowValues {
	r := &rowValues{v: make([]any, n), dest: make([]any, n)}
	for i := range r.v {
		r.dest[i] = &r.v[i]
	}
	return r
}

// scan reads the next row.
func (r *rowValues) scan(row interface{ Scan(...any) error }) error {
	r.err = nil
	if err := row.Scan(r.dest...); err != nil {
		return err
	}
	if r.packed {
		return r.unpack()
	}
	return nil
}

func (r *rowValues) fail(i int, want string) {
	if r.err != nil {
		return
	}
	if r.packed {
		r.err = fmt.Errorf("column %d: cannot read %q (NULL: %t) as %s", i, r.f[i], r.null[i], want)
		return
	}
	r.err = fmt.Errorf("column %d: cannot read %T as %s", i, r.v[i], want)
}

func (r *rowValues) int64(i int) int64 {
	if r.packed {
		n, err := strconv.ParseInt(r.f[i], 10, 64)
		if err != nil || r.null[i] {
			r.fail(i, "an integer")
		}
		return n
	}
	switch v := r.v[i].(type) {
	case int64:
		return v
	case int32:
		return int64(v)
	case int:
		return int64(v)
	case string, []byte:
		n, err := strconv.ParseInt(r.str(i), 10, 64)
		if err == nil {
			return n
		}
	}
	r.fail(i, "an integer")
	return 0
}

// nullInt64 is int64 with NULL read as 0.
func (r *rowValues) nullInt64(i int) int64 {
	if r.packed && r.null[i] || !r.packed && r.v[i] == nil {
		return 0
	}
	return r.int64(i)
}

func (r *rowValues) int(i int) int { return int(r.int64(i)) }

func (r *rowValues) str(i int) string {
	if r.packed {
		if r.null[i] {
			r.fail(i, "a string")
		}
		return r.f[i]
	}
	switch v := r.v[i].(type) {
	case string:
		return v
	case []byte:
		return string(v) // database/sql copied it already: no alias
	}
	r.fail(i, "a string")
	return ""
}

func (r *rowValues) bool(i int) bool {
	if r.packed {
		if !r.null[i] && (r.f[i] == "0" || r.f[i] == "1") {
			return r.f[i] == "1"
		}
		r.fail(i, "a boolean")
		return false
	}
	switch v := r.v[i].(type) {
	case bool:
		return v
	case int64:
		if v == 0 || v == 1 {
			return v == 1
		}
	}
	r.fail(i, "a boolean")
	return false
}

func (r *rowValues) time(i int) dbTime {
	var t dbTime
	var err error
	switch {
	case r.packed && r.null[i]:
	case r.packed:
		t.Time, err = parseTextTime(r.f[i])
		t.Valid = err == nil
	default:
		err = t.Scan(r.v[i])
	}
	if err != nil && r.err == nil {
		r.err = fmt.Errorf("column %d: %w", i, err)
	}
	return t
}

// SQLite (in modernc.org/sqlite) takes the connection's mutex, through a
// lookup in a shared table of mutexes, for every column of every row it
// hands over, two or three times: for a page of 100 jobs of 21 columns,
// about 5,000 lock and unlock pairs, nearly half of the server's CPU for
// the page. The lists therefore read each row on SQLite as one text
// column that packs the row's columns (packColumns), and rowValues splits
// it: three mutex pairs a row.

// packedColumns is an SQLite expression that packs columns into one text,
// and what rowValues needs to split it.
type packedColumns struct {
	sql  string
	text []bool // which columns are length-prefixed
}

// packColumns packs the comma-separated column expressions cols into one
// text with a single call of concat, which sizes its result once
// (concatenating with || made a string per operator, costing more than
// the mutexes saved). A column named in text (free text: any byte may
// occur) packs as its length in bytes, a colon and its text, or a lone
// colon when it is NULL; any other column (integers, booleans and times,
// whose text holds no comma) as its text and a comma, or a lone comma
// when it is NULL.
func packColumns(cols string, text ...string) packedColumns {
	var p packedColumns
	var args []string
	for c := range strings.SplitSeq(cols, ",") {
		c = strings.TrimSpace(c)
		isText := slices.Contains(text, c)
		if isText {
			args = append(args, "octet_length("+c+")", "':'", c)
		} else {
			args = append(args, c, "','")
		}
		p.text = append(p.text, isText)
	}
	p.sql = "concat(" + strings.Join(args, ", ") + ")"
	return p
}

// row returns the rowValues that read rows of p.
func (p packedColumns) row() *rowValues {
	r := newRowValues(1)
	r.packed, r.text, r.f, r.null = true, p.text, make([]string, len(p.text)), make([]bool, len(p.text))
	return r
}

// unpack splits the packed row in r.v[0] into r.f and r.null.
func (r *rowValues) unpack() error {
	s, ok := r.v[0].(string)
	if !ok {
		if b, isBytes := r.v[0].([]byte); isBytes {
			s, ok = string(b), true
		}
	}
	if !ok {
		return fmt.Errorf("packed row: cannot read %T", r.v[0])
	}
	for i := range r.f {
		if !r.text[i] {
			comma := strings.IndexByte(s, ',')
			if comma < 0 {
				return fmt.Errorf("packed row: column %d is not terminated", i)
			}
			r.f[i], r.null[i], s = s[:comma], comma == 0, s[comma+1:]
			continue
		}
		if strings.HasPrefix(s, ":") {
			r.f[i], r.null[i], s = "", true, s[1:]
			continue
		}
		colon := strings.IndexByte(s, ':')
		n, err := strconv.Atoi(s[:max(colon, 0)])
		if colon < 0 || err != nil || n < 0 || n > len(s)-colon-1 {
			return fmt.Errorf("packed row: column %d is malformed", i)
		}
		r.f[i], r.null[i], s = s[colon+1:colon+1+n], false, s[colon+1+n:]
	}
	if s != "" {
		return fmt.Errorf("packed row: %d bytes after the last column", len(s))
	}
	return nil
}
