package store_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/store"
	"github.com/otter-ota/otter/internal/store/storetest"
)

func TestTokenNamesAreUniqueIgnoringCase(t *testing.T) {
	run(t, func(t *testing.T, s store.Store) {
		ctx := context.Background()
		ci := ota.Token{Name: "ci", Role: ota.RoleOperator}
		must(t, s.CreateToken(ctx, &ci, hash("1")))
		err := s.CreateToken(ctx, &ota.Token{Name: "CI", Role: ota.RoleViewer}, hash("2"))
		wantCode(t, err, ota.ECONFLICT)
		if !strings.Contains(err.Error(), `a token named "CI" exists already`) {
			t.Errorf("conflict message: %v", err)
		}
		// A revoked token keeps its name: past events still name it alone.
		must(t, s.RevokeToken(ctx, ci.ID))
		wantCode(t, s.CreateToken(ctx, &ota.Token{Name: "ci", Role: ota.RoleViewer}, hash("3")), ota.ECONFLICT)
	})
}

// TestMigrationRenamesDuplicateTokenNames stores duplicate names as the
// first schema allowed, then migrates: the oldest keeps its name.
func TestMigrationRenamesDuplicateTokenNames(t *testing.T) {
	runURL(t, func(t *testing.T, url string) {
		ctx := context.Background()
		must(t, store.MigrateTo(ctx, url, 1))
		for i, name := range []string{"ci", "CI", "ci", "admin"} {
			must(t, store.ExecAt(ctx, url, `INSERT INTO tokens (name, role, hash, created_at) VALUES ($1, 'viewer', $2, $3)`,
				name, hash(string(rune('a'+i))), time.Now().UTC()))
		}
		s := storetest.OpenURL(t, url)
		list, _, err := s.ListTokens(ctx, store.Page{})
		must(t, err)
		var names []string
		for _, tok := range list {
			names = append(names, tok.Name)
		}
		if got, want := strings.Join(names, " "), "ci CI-2 ci-3 admin"; got != want {
			t.Errorf("names after the migration: %s, want %s", got, want)
		}
		wantCode(t, s.CreateToken(ctx, &ota.Token{Name: "Ci-2", Role: ota.RoleViewer}, hash("z")), ota.ECONFLICT)
	})
}

func TestEndedSessions(t *testing.T) {
	c := storetest.NewClock(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
	run(t, func(t *testing.T, s store.Store) {
		ctx := context.Background()
		id, other := []byte("session-one-0123"), []byte("session-two-0123")
		ended, err := s.SessionEnded(ctx, id)
		if err != nil || ended {
			t.Fatalf("a live session reads as ended: %v %v", ended, err)
		}
		e := ota.Event{Kind: ota.KindSession, Action: "signed-out", Data: map[string]string{"token": "ci"}}
		must(t, s.EndSession(as("ci"), id, c.Now().Add(time.Hour), e))
		must(t, s.EndSession(as("ci"), id, c.Now().Add(time.Hour), e)) // twice is fine
		if ended, err := s.SessionEnded(ctx, id); err != nil || !ended {
			t.Fatalf("an ended session reads as live: %v %v", ended, err)
		}
		if got := lastEvent(t, s); got.Actor != "ci" || got.Kind != ota.KindSession || got.Action != "signed-out" {
			t.Errorf("event %+v", got)
		}
		// Once past its expiry the record goes (the cookie is refused by
		// its own expiry then).
		c.Add(2 * time.Hour)
		must(t, s.EndSession(ctx, other, c.Now().Add(time.Hour), e))
		if ended, err := s.SessionEnded(ctx, id); err != nil || ended {
			t.Errorf("an expired ended session is still stored: %v %v", ended, err)
		}
		wantCode(t, s.RecordEvent(ctx, ota.Event{Kind: ota.KindSession}), ota.EINVALID)
		must(t, s.RecordEvent(as("anonymous"), ota.Event{Kind: ota.KindSession, Action: "signin-failed"}))
		if got := lastEvent(t, s); got.Actor != "anonymous" || got.Action != "signin-failed" {
			t.Errorf("event %+v", got)
		}
	}, store.WithClock(c.Now))
}
