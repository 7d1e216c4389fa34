package store_test

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/store"
	"github.com/otter-ota/otter/internal/store/storetest"
)

func TestReopenKeepsData(t *testing.T) {
	runURL(t, func(t *testing.T, url string) {
		ctx := context.Background()
		s, err := store.Open(ctx, url, nil)
		must(t, err)
		p := ota.Product{Key: "kept", Name: "Kept"}
		must(t, s.CreateProduct(ctx, &p))
		dev := createDevices(t, s, []store.NewDevice{{Product: "kept", Key: "d", SecretHash: hash("d"),
			Tags: map[string]string{"a": "b"}}})[0]
		must(t, s.Close())

		s = storetest.OpenURL(t, url) // migrations find nothing to do
		got, err := s.GetProduct(ctx, "kept")
		must(t, err)
		if diff := cmp.Diff(p, got); diff != "" {
			t.Errorf("product after reopen (-want +got):\n%s", diff)
		}
		gotDev, err := s.GetDevice(ctx, "kept", "d")
		must(t, err)
		if diff := cmp.Diff(dev, gotDev); diff != "" {
			t.Errorf("device after reopen (-want +got):\n%s", diff)
		}
		must(t, s.Ping(ctx))
	})
}

// Writes share one connection on SQLite (the writer): a store closed with
// it refuses later writes instead of waiting for it, and a store opened
// again on the same file writes on a writer of its own.
func TestWriteAfterCloseFailsAndReopenWrites(t *testing.T) {
	runURL(t, func(t *testing.T, url string) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		s, err := store.Open(ctx, url, nil)
		must(t, err)
		must(t, s.CreateProduct(ctx, &ota.Product{Key: "first"}))
		must(t, s.Close())
		if err := s.CreateProduct(ctx, &ota.Product{Key: "late"}); err == nil {
			t.Fatal("a write after Close succeeded")
		}
		s = storetest.OpenURL(t, url)
		must(t, s.CreateProduct(ctx, &ota.Product{Key: "second"}))
		for _, key := range []string{"first", "second"} {
			if _, err := s.GetProduct(ctx, key); err != nil {
				t.Errorf("product %s: %v", key, err)
			}
		}
	})
}

func TestOpenPlainPath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "new", "folder", "otter.db")
	s := storetest.OpenURL(t, path)
	createProduct(t, s, "p")
	if _, err := os.Stat(path); err != nil {
		t.Errorf("database file not created: %v", err)
	}
}

func TestOpenRefused(t *testing.T) {
	tests := []struct {
		url  string
		code string
	}{
		{"mysql://root@localhost/otter", ota.EINVALID},
		{"sqlite:", ota.EINVALID},
		{":memory:", ota.EINVALID},
		{"sqlite:otter.db?_pragma=foo", ota.EINVALID},
		{"postgres://u@127.0.0.1:1/x?connect_timeout=2&sslmode=disable", ota.EINTERNAL},
		{"postgres://u:hunter2@127.0.0.1:notaport/x", ota.EINVALID},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			s, err := store.Open(ctx, tt.url, nil)
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			wantCode(t, err, tt.code)
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("message %q shows the password", err)
			}
		})
	}
}

// TestMigrationVersionsMatch keeps the two migration folders in step: every
// schema change must be written for both databases.
func TestMigrationVersionsMatch(t *testing.T) {
	versions := func(dir string) []string {
		entries, err := os.ReadDir(filepath.Join("migrations", dir))
		must(t, err)
		var v []string
		for _, e := range entries {
			m := regexp.MustCompile(`^(\d+)_.*\.sql$`).FindStringSubmatch(e.Name())
			if m == nil {
				t.Errorf("migrations/%s/%s is not named VERSION_name.sql", dir, e.Name())
				continue
			}
			v = append(v, m[1])
		}
		return v
	}
	sqlite, postgres := versions("sqlite"), versions("postgres")
	if len(sqlite) == 0 {
		t.Fatal("no migrations")
	}
	if diff := cmp.Diff(sqlite, postgres); diff != "" {
		t.Errorf("migration versions differ (-sqlite +postgres):\n%s", diff)
	}
	if !slices.IsSorted(sqlite) || len(slices.Compact(slices.Clone(sqlite))) != len(sqlite) {
		t.Errorf("versions %v repeat", sqlite)
	}
}
