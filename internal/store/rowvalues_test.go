package store

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"
)

// packedTable is a table of every kind of column the lists pack.
const packedTable = `CREATE TABLE p (id INTEGER PRIMARY KEY, n BIGINT, name TEXT NOT NULL, note TEXT,
	flag BOOLEAN NOT NULL, at TIMESTAMP NOT NULL, maybe TIMESTAMP)`

var packedP = packColumns("id, n, name, note, flag, at, maybe", "name", "note")

type packedRow struct {
	n          int64
	nNull      bool
	name, note string
	noteNull   bool
	flag       bool
	at         time.Time
	maybe      *time.Time
}

// openPackedDB is a SQLite database, opened as the store opens it, with
// packedTable.
func openPackedDB(t testing.TB) *sql.DB {
	t.Helper()
	s, err := connectSQLite(filepath.Join(t.TempDir(), "p.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.db.Close() })
	if _, err := s.db.DB.Exec(packedTable); err != nil {
		t.Fatal(err)
	}
	return s.db.DB
}

// checkPacked stores in and reads it back packed, and fails unless every
// value is the same.
func checkPacked(t testing.TB, db *sql.DB, in packedRow) {
	t.Helper()
	ctx := context.Background()
	var n, note, maybe any
	if !in.nNull {
		n = in.n
	}
	if in.noteNull {
		in.note = ""
	} else {
		note = in.note
	}
	if in.maybe != nil {
		maybe = *in.maybe
	}
	res, err := db.ExecContext(ctx, "INSERT INTO p (n, name, note, flag, at, maybe) VALUES (?, ?, ?, ?, ?, ?)",
		n, in.name, note, in.flag, in.at, maybe)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := res.LastInsertId()
	r := packedP.row()
	if err := r.scan(db.QueryRowContext(ctx, "SELECT "+packedP.sql+" FROM p WHERE id = ?", id)); err != nil {
		t.Fatal(err)
	}
	out := packedRow{n: r.nullInt64(1), nNull: r.null[1], name: r.str(2), note: r.f[3], noteNull: r.null[3], flag: r.bool(4)}
	at, m := r.time(5), r.time(6)
	if r.err != nil {
		t.Fatal(r.err)
	}
	out.at, out.maybe = at.Time, m.ptr()
	if r.int64(0) != id || out.n != in.n || out.nNull != in.nNull || out.name != in.name || out.note != in.note ||
		out.noteNull != in.noteNull || out.flag != in.flag || !out.at.Equal(in.at) ||
		(out.maybe == nil) != (in.maybe == nil) || out.maybe != nil && !out.maybe.Equal(*in.maybe) {
		t.Fatalf("packed row %d read back as %+v, want %+v", id, out, in)
	}
}

func TestPackedRows(t *testing.T) {
	db := openPackedDB(t)
	at := time.Date(2026, 12, 1, 15, 4, 5, 123456789, time.UTC)
	zoned := time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 5*3600+30*60))
	odd := "a:b,c 12:3, é\x00\xff\u2028 :,"
	for _, in := range []packedRow{
		{n: 1, name: "d1", note: "", flag: true, at: at},
		{nNull: true, name: "", noteNull: true, at: zoned, maybe: &at},
		{n: -9223372036854775808, name: odd, note: odd, at: at, maybe: &zoned},
		{n: 9223372036854775807, name: ":", note: ",", flag: true, at: at},
		{n: 0, name: "3:abc", note: "-", at: at},
	} {
		checkPacked(t, db, in)
	}
}

// TestUnpackRefusesMalformedRows checks that a row that does not match
// its columns is an error, never a shifted read.
func TestUnpackRefusesMalformedRows(t *testing.T) {
	for _, s := range []string{"", "1,", "1,2,3:abc:,0,x,,", "1,2,3:abc:,0,x,,extra", "1,2,9:abc:,0,x,,",
		"1,2,-1:abc:,0,x,,", "1,2,abc", "1,2,3:abc:"} {
		r := packedP.row()
		r.v[0] = s
		if err := r.unpack(); err == nil {
			t.Errorf("unpack(%q) = nil, want an error", s)
		}
	}
	r := packedP.row()
	r.v[0] = "1,,3:abc:0,2026-01-02 03:04:05+00:00,,"
	if err := r.unpack(); err != nil {
		t.Fatal(err)
	}
	if r.f[2] != "abc" || !r.null[1] || !r.null[3] || !r.null[6] {
		t.Errorf("unpacked %q %v", r.f, r.null)
	}
}

// FuzzPackedRow stores any values and checks that the packed read gives
// them back, and that unpacking any text never panics.
func FuzzPackedRow(f *testing.F) {
	f.Add(int64(7), "d1", "install failed: 3,4", true, int64(1700000000), "1,2,3:abc:,0,x,,")
	f.Add(int64(-1), "", ":", false, int64(0), "")
	db := openPackedDB(f)
	f.Fuzz(func(t *testing.T, n int64, name, note string, flag bool, sec int64, raw string) {
		r := packedP.row()
		r.v[0] = raw
		_ = r.unpack()
		at := time.Unix(sec%(1<<34), 0).UTC()
		checkPacked(t, db, packedRow{n: n, name: name, note: note, noteNull: n%3 == 0, flag: flag, at: at, maybe: &at})
	})
}
