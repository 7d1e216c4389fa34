package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/store"
	"github.com/otter-ota/otter/internal/store/storetest"
)

func TestTokens(t *testing.T) {
	c := storetest.NewClock(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
	run(t, func(t *testing.T, s store.Store) {
		ctx := context.Background()
		admin := ota.Token{Name: "first admin", Role: ota.RoleAdmin}
		must(t, s.CreateToken(as("system"), &admin, hash("secret-1")))
		if admin.ID == 0 || !admin.CreatedAt.Equal(c.Now()) {
			t.Fatalf("CreateToken assigned %+v", admin)
		}
		wantEvent := ota.Event{Actor: "system", Kind: ota.KindToken, Action: "created",
			Data: map[string]string{"id": fmt.Sprint(admin.ID), "name": "first admin", "role": "admin"}}
		if diff := cmp.Diff(wantEvent, lastEvent(t, s), ignoreEventIDAt); diff != "" {
			t.Errorf("event (-want +got):\n%s", diff)
		}

		got, err := s.TokenByHash(ctx, hash("secret-1"))
		must(t, err)
		first := c.Now()
		admin.LastUsedAt = &first
		if diff := cmp.Diff(admin, got); diff != "" {
			t.Errorf("TokenByHash (-want +got):\n%s", diff)
		}
		_, err = s.TokenByHash(ctx, hash("wrong"))
		wantCode(t, err, ota.ENOTFOUND)

		// Within a minute the stored time does not move; after it, it does.
		c.Add(30 * time.Second)
		got, err = s.TokenByHash(ctx, hash("secret-1"))
		must(t, err)
		if !got.LastUsedAt.Equal(first) {
			t.Errorf("last used %v after 30s, want it kept at %v", got.LastUsedAt, first)
		}
		c.Add(time.Minute)
		_, err = s.TokenByHash(ctx, hash("secret-1"))
		must(t, err)
		list, _, err := s.ListTokens(ctx, store.Page{})
		must(t, err)
		if !list[0].LastUsedAt.Equal(c.Now()) {
			t.Errorf("stored last used %v, want %v", list[0].LastUsedAt, c.Now())
		}
	}, store.WithClock(c.Now))
}

func TestTokenRefused(t *testing.T) {
	run(t, func(t *testing.T, s store.Store) {
		ctx := context.Background()
		tok := ota.Token{Name: "ci", Role: ota.RoleOperator}
		must(t, s.CreateToken(ctx, &tok, hash("x")))
		wantCode(t, s.CreateToken(ctx, &ota.Token{Name: "dup", Role: ota.RoleViewer}, hash("x")), ota.ECONFLICT)
		wantCode(t, s.CreateToken(ctx, &ota.Token{Name: "r", Role: "root"}, hash("y")), ota.EINVALID)
		wantCode(t, s.CreateToken(ctx, &ota.Token{Role: ota.RoleViewer}, hash("y")), ota.EINVALID)
		wantCode(t, s.CreateToken(ctx, &ota.Token{Name: "n", Role: ota.RoleViewer}, nil), ota.EINVALID)
		n, err := s.CountTokens(ctx)
		must(t, err)
		if n != 1 {
			t.Errorf("CountTokens = %d, want 1", n)
		}
	})
}

func TestTokenRevoke(t *testing.T) {
	run(t, func(t *testing.T, s store.Store) {
		ctx := context.Background()
		var ids []int64
		for i := range 5 {
			tok := ota.Token{Name: fmt.Sprint("t", i), Role: ota.RoleViewer}
			must(t, s.CreateToken(ctx, &tok, hash(tok.Name)))
			ids = append(ids, tok.ID)
		}
		must(t, s.RevokeToken(as("root"), ids[1]))
		if e := lastEvent(t, s); e.Kind != ota.KindToken || e.Action != "revoked" || e.Actor != "root" ||
			e.Data["id"] != fmt.Sprint(ids[1]) {
			t.Errorf("event = %+v, want token revoked by root", e)
		}
		_, err := s.TokenByHash(ctx, hash("t1"))
		wantCode(t, err, ota.ENOTFOUND)
		wantCode(t, s.RevokeToken(ctx, ids[1]), ota.ECONFLICT)
		wantCode(t, s.RevokeToken(ctx, 424242), ota.ENOTFOUND)
		n, err := s.CountTokens(ctx)
		must(t, err)
		if n != 4 {
			t.Errorf("CountTokens = %d, want 4", n)
		}
		all, pages := collect(t, 2, func(p store.Page) ([]ota.Token, string, error) { return s.ListTokens(ctx, p) })
		var got []int64
		for _, tok := range all {
			got = append(got, tok.ID)
			if (tok.RevokedAt != nil) != (tok.ID == ids[1]) {
				t.Errorf("token %d revoked at %v", tok.ID, tok.RevokedAt)
			}
		}
		if diff := cmp.Diff(ids, got); diff != "" || pages != 3 {
			t.Errorf("pages = %d, ids (-want +got):\n%s", pages, diff)
		}
	})
}
