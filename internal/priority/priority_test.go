package priority_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/otter-ota/otter/internal/priority"
)

func TestWaitReturnsAtOnceWithoutReads(t *testing.T) {
	var r priority.Reads
	if r.Busy() {
		t.Fatal("busy with no read")
	}
	if r.Wait(context.Background(), time.Hour) {
		t.Fatal("Wait says a read was in flight")
	}
	end := r.Begin()
	end()
	if r.Busy() {
		t.Fatal("a read that ended is still in flight")
	}
	// Returns at once (the test would time out otherwise), and says reads
	// are coming: one ended just now.
	if !r.Wait(context.Background(), time.Hour) {
		t.Fatal("Wait says no read came recently, just after one ended")
	}
	var none *priority.Reads
	none.Begin()()
	if none.Busy() || none.Wait(context.Background(), time.Hour) {
		t.Fatal("a nil Reads counted a read")
	}
}

func TestWaitEndsWhenTheLastReadEnds(t *testing.T) {
	var r priority.Reads
	end1, end2 := r.Begin(), r.Begin()
	// Wait may start before or after the reads end: either way it must
	// return once they have, well before its bound.
	done := make(chan bool, 1)
	go func() { done <- r.Wait(context.Background(), time.Hour) }()
	end1()
	if !r.Busy() {
		t.Fatal("not busy with one read left")
	}
	select {
	case <-done:
		t.Fatal("Wait returned with a read still in flight")
	default:
	}
	end2()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Wait did not return when the reads ended")
	}
}

func TestWaitIsBounded(t *testing.T) {
	var r priority.Reads
	defer r.Begin()() // a read that outlasts the waits
	t0 := time.Now()
	if !r.Wait(context.Background(), 20*time.Millisecond) {
		t.Fatal("Wait says no read was in flight")
	}
	if d := time.Since(t0); d < 20*time.Millisecond {
		t.Fatalf("Wait returned after %v, before its bound", d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if !r.Wait(ctx, time.Hour) {
		t.Fatal("Wait says no read was in flight")
	}
}

func TestMiddlewareCountsGETAndHEADOnly(t *testing.T) {
	var r priority.Reads
	var busy bool
	h := r.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { busy = r.Busy() }))
	for _, tc := range []struct {
		method string
		read   bool
	}{
		{http.MethodGet, true}, {http.MethodHead, true},
		{http.MethodPost, false}, {http.MethodPut, false}, {http.MethodPatch, false}, {http.MethodDelete, false},
	} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(tc.method, "/api/v1/tasks", nil))
		if busy != tc.read {
			t.Errorf("%s: a read in flight while served = %t, want %t", tc.method, busy, tc.read)
		}
		if r.Busy() {
			t.Errorf("%s: still in flight after it was served", tc.method)
		}
	}
}
