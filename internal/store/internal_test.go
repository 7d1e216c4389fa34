package store

import (
	"testing"

	"github.com/otter-ota/otter/internal/ota"
)

func TestSQLitePath(t *testing.T) {
	tests := []struct {
		url, path, code string
	}{
		{"sqlite:data/otter.db", "data/otter.db", ""},
		{"sqlite:///var/lib/otter/otter.db", "/var/lib/otter/otter.db", ""},
		{"sqlite://rel/otter.db", "rel/otter.db", ""},
		{"/abs/otter.db", "/abs/otter.db", ""},
		{"otter.db", "otter.db", ""},
		{"sqlite:", "", ota.EINVALID},
		{"", "", ota.EINVALID},
		{":memory:", "", ota.EINVALID},
		{"sqlite::memory:", "", ota.EINVALID},
		{"file:x.db", "", ota.EINVALID},
		{"x.db?_pragma=1", "", ota.EINVALID},
		{"mysql://h/db", "", ota.EINVALID},
	}
	for _, tt := range tests {
		path, err := sqlitePath(tt.url)
		if path != tt.path || ota.ErrorCode(err) != tt.code {
			t.Errorf("sqlitePath(%q) = %q, %v; want %q, code %q", tt.url, path, err, tt.path, tt.code)
		}
	}
}

func FuzzSQLitePath(f *testing.F) {
	for _, s := range []string{"sqlite:a.db", "a.db", "x://y", "sqlite:", ":memory:", "a?b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, url string) {
		path, err := sqlitePath(url)
		if err != nil {
			if ota.ErrorCode(err) != ota.EINVALID {
				t.Fatalf("sqlitePath(%q): error %v is not EINVALID", url, err)
			}
			return
		}
		if path == "" {
			t.Fatalf("sqlitePath(%q) accepted an empty path", url)
		}
	})
}

func TestCursor(t *testing.T) {
	tests := []struct {
		cursor string
		id     int64
		code   string
	}{
		{"", 0, ""},
		{encodeCursor("42"), 42, ""},
		{encodeCursor("9223372036854775807"), 9223372036854775807, ""},
		{encodeCursor("0"), 0, ota.EINVALID},
		{encodeCursor("-5"), 0, ota.EINVALID},
		{encodeCursor("abc"), 0, ota.EINVALID},
		{encodeCursor("99999999999999999999"), 0, ota.EINVALID},
		{"%%%", 0, ota.EINVALID},
		{"NDI=", 0, ota.EINVALID}, // padded: not what encodeCursor makes
	}
	for _, tt := range tests {
		id, err := decodeIDCursor(tt.cursor)
		if id != tt.id || ota.ErrorCode(err) != tt.code {
			t.Errorf("decodeIDCursor(%q) = %d, %v; want %d, code %q", tt.cursor, id, err, tt.id, tt.code)
		}
	}
}

func FuzzDecodeIDCursor(f *testing.F) {
	for _, s := range []string{"", "MQ", "NDI", "%%", "LTE", "OTIyMzM3MjAzNjg1NDc3NTgwNw"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, cursor string) {
		id, err := decodeIDCursor(cursor)
		switch {
		case err != nil:
			if ota.ErrorCode(err) != ota.EINVALID {
				t.Fatalf("decodeIDCursor(%q): error %v is not EINVALID", cursor, err)
			}
		case cursor == "":
			if id != 0 {
				t.Fatalf("empty cursor gave %d", id)
			}
		case id <= 0:
			t.Fatalf("decodeIDCursor(%q) = %d without error", cursor, id)
		default:
			if again, err := decodeIDCursor(encodeCursor(idKey(id))); err != nil || again != id {
				t.Fatalf("id %d does not round-trip: %d, %v", id, again, err)
			}
		}
	})
}

func TestPageLimit(t *testing.T) {
	tests := []struct {
		limit, want int
		code        string
	}{
		{0, DefaultPageSize, ""}, {1, 1, ""}, {MaxPageSize, MaxPageSize, ""},
		{MaxPageSize + 1, MaxPageSize, ""}, {-1, 0, ota.EINVALID},
	}
	for _, tt := range tests {
		got, err := pageLimit(Page{Limit: tt.limit})
		if got != tt.want || ota.ErrorCode(err) != tt.code {
			t.Errorf("pageLimit(%d) = %d, %v; want %d, code %q", tt.limit, got, err, tt.want, tt.code)
		}
	}
}

func TestRebind(t *testing.T) {
	tests := []struct {
		q, sqlite string
	}{
		{"SELECT 1", "SELECT 1"},
		{"SELECT a FROM t WHERE b = $1 AND c > $2 LIMIT $3", "SELECT a FROM t WHERE b = ? AND c > ? LIMIT ?"},
		{"VALUES ($1, $2), ($3, $4), ($5, $6), ($7, $8), ($9, $10), ($11, $12)",
			"VALUES (?, ?), (?, ?), (?, ?), (?, ?), (?, ?), (?, ?)"},
		// Reused or out-of-order placeholders stay named.
		{"SELECT (SELECT 1 WHERE x = $1), (SELECT 2 WHERE y = $1)", "SELECT (SELECT 1 WHERE x = $1), (SELECT 2 WHERE y = $1)"},
		{"UPDATE t SET a = $3 WHERE b = $1 AND c = $2", "UPDATE t SET a = $3 WHERE b = $1 AND c = $2"},
		{"SELECT $ FROM t", "SELECT $ FROM t"},
	}
	for _, tt := range tests {
		if got := (binder{positional: true}).rebind(tt.q); got != tt.sqlite {
			t.Errorf("rebind(%q) = %q, want %q", tt.q, got, tt.sqlite)
		}
		if got := (binder{}).rebind(tt.q); got != tt.q {
			t.Errorf("PostgreSQL rebind(%q) = %q, want it unchanged", tt.q, got)
		}
	}
}

func TestValues(t *testing.T) {
	if got, want := values(2, 3), "($1, $2, $3), ($4, $5, $6)"; got != want {
		t.Errorf("values(2, 3) = %q, want %q", got, want)
	}
	for _, n := range []int{0, 1, 3333, 3334, 10000} {
		total := 0
		for _, c := range chunks(make([]int, n), 3) {
			if len(c)*3 > maxParams || len(c) == 0 {
				t.Errorf("chunk of %d rows of 3 parameters", len(c))
			}
			if len(c)&(len(c)-1) != 0 {
				t.Errorf("chunk of %d rows: not a power of two, so not one of the few shapes kept prepared", len(c))
			}
			total += len(c)
		}
		if total != n {
			t.Errorf("chunks of %d items hold %d", n, total)
		}
	}
}
