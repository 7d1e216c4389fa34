package leader_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/otter-ota/otter/internal/leader"
	"github.com/otter-ota/otter/internal/store/storetest"
)

func TestAlwaysLeadsUntilItsContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	held, release, err := leader.Always{}.Campaign(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	cancel()
	<-held.Done() // ends with ctx
	if _, _, err := (leader.Always{}).Campaign(ctx, true); !errors.Is(err, context.Canceled) {
		t.Fatalf("Campaign after ctx ended: %v, want context.Canceled", err)
	}
}

// Two electors on one schema: one leads, the other does not until the
// first releases; an elector on another schema leads on its own.
func TestPostgresLeadsOneAtATimePerSchema(t *testing.T) {
	base := os.Getenv(storetest.PostgresEnv)
	if base == "" {
		t.Skipf("needs PostgreSQL: set %s", storetest.PostgresEnv)
	}
	url := storetest.PostgresURL(t, base)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	elector := func(u string) *leader.Postgres {
		return &leader.Postgres{URL: u, Retry: 50 * time.Millisecond, Check: 50 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)}
	}
	a, b := elector(url), elector(url)
	heldA, releaseA, err := a.Campaign(ctx, false)
	if err != nil {
		t.Fatalf("the first elector does not lead: %v", err)
	}
	if _, _, err := b.Campaign(ctx, false); !errors.Is(err, leader.ErrNotLeader) {
		t.Fatalf("the second elector's try: %v, want ErrNotLeader", err)
	}
	other, releaseOther, err := elector(storetest.PostgresURL(t, base)).Campaign(ctx, false)
	if err != nil {
		t.Fatalf("an elector on another schema does not lead: %v", err)
	}
	defer releaseOther()

	won := make(chan func())
	go func() {
		_, release, err := b.Campaign(ctx, true)
		if err != nil {
			t.Error(err)
			close(won)
			return
		}
		won <- release
	}()
	select {
	case <-won:
		t.Fatal("the second elector leads while the first holds the lock")
	case <-time.After(300 * time.Millisecond): // six retries of b
	}
	releaseA()
	if heldA.Err() == nil {
		t.Fatal("the first elector's held context goes on after release")
	}
	releaseB, ok := <-won
	if !ok {
		return
	}
	releaseB()
	if other.Err() != nil {
		t.Fatal("the other schema's leader lost its lead")
	}
}
