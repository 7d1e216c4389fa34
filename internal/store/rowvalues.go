package store

import (
	"fmt"
	"strconv"
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
	return row.Scan(r.dest...)
}

func (r *rowValues) fail(i int, want string) {
	if r.err == nil {
		r.err = fmt.Errorf("column %d: cannot read %T as %s", i, r.v[i], want)
	}
}

func (r *rowValues) int64(i int) int64 {
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
	if r.v[i] == nil {
		return 0
	}
	return r.int64(i)
}

func (r *rowValues) int(i int) int { return int(r.int64(i)) }

func (r *rowValues) str(i int) string {
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
	if err := t.Scan(r.v[i]); err != nil && r.err == nil {
		r.err = fmt.Errorf("column %d: %w", i, err)
	}
	return t
}
