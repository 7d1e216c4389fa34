package console_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/otter-ota/otter/internal/console"
	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/store"
)

// TestSignoutEndsTheSessionOnTheServer copies a session cookie to another
// browser and to another replica, signs out, and checks that the copies
// are refused at once.
func TestSignoutEndsTheSessionOnTheServer(t *testing.T) {
	s := newStack(t)
	u := s.signedIn(ota.RoleViewer)
	base, _ := url.Parse(s.srv.URL)
	copied := s.user()
	copied.http.Jar.SetCookies(base, u.http.Jar.Cookies(base))
	if _, body := copied.get("/"); !strings.Contains(body, "Overview") {
		t.Fatal("a copied cookie does not open the session before the sign-out")
	}

	// A second replica on the same store.
	c, err := console.New(console.Config{Store: s.st, API: s.newAPI().Handler(), Now: s.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	replica := httptest.NewServer(c.Handler())
	defer replica.Close()
	req, _ := http.NewRequest(http.MethodGet, replica.URL+"/", nil)
	for _, ck := range u.http.Jar.Cookies(base) {
		req.AddCookie(ck)
	}
	if status := statusOf(t, req); status != http.StatusOK {
		t.Fatalf("the replica answers the session with %d", status)
	}

	if status, body := u.post("/signout", nil); status != http.StatusOK || !strings.Contains(body, "Sign in to otter") {
		t.Fatalf("sign out: %d\n%s", status, text(body))
	}
	if _, body := copied.get("/"); !strings.Contains(body, "Sign in to otter") {
		t.Error("a copy of a signed-out cookie still opens the session")
	}
	if status := statusOf(t, req); status != http.StatusSeeOther {
		t.Errorf("the replica answers a signed-out cookie with %d, want a redirect to the sign-in", status)
	}
}

// statusOf sends req without following redirects and returns the status.
func statusOf(t *testing.T, req *http.Request) int {
	t.Helper()
	cl := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestSigninsAndSignoutsAreEvents records who signed in and out, and every
// failed attempt, without the token tried.
func TestSigninsAndSignoutsAreEvents(t *testing.T) {
	s := newStack(t)
	u := s.user()
	if status, _ := u.signinWith("otr_not-a-token"); status != http.StatusUnauthorized {
		t.Fatalf("a wrong token signs in: %d", status)
	}
	u.signin(s.tokens[ota.RoleOperator])
	u.post("/signout", nil)

	events, _, err := s.st.ListEvents(s.ctx, store.EventFilter{Kind: ota.KindSession}, store.Page{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range events {
		got = append(got, e.Actor+" "+e.Action)
		if e.Data["remote"] == "" || strings.Contains(e.Message+e.Data["remote"], "otr_") {
			t.Errorf("event %+v: want the remote address and never the token", e)
		}
	}
	want := "operator-token signed-out, operator-token signed-in, anonymous signin-failed"
	if strings.Join(got, ", ") != want {
		t.Errorf("session events (newest first): %s\nwant %s", strings.Join(got, ", "), want)
	}
}
