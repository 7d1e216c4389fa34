package console_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/store"
)

func TestPagesNeedASignIn(t *testing.T) {
	s := newStack(t)
	u := s.user()
	u.http.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	for _, path := range []string{"/", "/products", "/tasks/1", "/events?kind=job"} {
		resp, err := u.http.Get(s.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc := resp.Header.Get("Location")
		if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "/signin") {
			t.Errorf("GET %s without a session: %d to %q, want a redirect to /signin", path, resp.StatusCode, loc)
		}
		if path != "/" && !strings.Contains(loc, url.QueryEscape(path)) {
			t.Errorf("GET %s: the sign-in does not lead back: %q", path, loc)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, s.srv.URL+"/tasks/1/live", nil)
	req.Header.Set("HX-Request", "true")
	resp, err := u.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("HX-Redirect"), "/signin") {
		t.Errorf("an htmx poll without a session: %d, HX-Redirect %q", resp.StatusCode, resp.Header.Get("HX-Redirect"))
	}
}

func TestSignin(t *testing.T) {
	s := newStack(t)
	revoked := s.token("old", ota.RoleAdmin)
	tokens, _, err := s.st.ListTokens(s.ctx, store.Page{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range tokens {
		if tok.Name == "old" {
			if err := s.st.RevokeToken(s.ctx, tok.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
	cases := []struct {
		name, token string
		status      int
		say         string
	}{
		{"empty", "", http.StatusUnauthorized, "Enter an API token"},
		{"unknown", "otr_nope", http.StatusUnauthorized, "This token is unknown or revoked."},
		{"revoked", revoked, http.StatusUnauthorized, "This token is unknown or revoked."},
		{"operator", s.tokens[ota.RoleOperator], http.StatusOK, "operator-token"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, body := s.user().signinWith(c.token)
			if status != c.status {
				t.Errorf("status %d, want %d", status, c.status)
			}
			mustContain(t, "sign-in", body, c.say)
		})
	}
}

// TestSigninRefusesOtherOrigins: a sign-in posted from another site (login
// CSRF: signing the victim in as the attacker) is refused.
func TestSigninRefusesOtherOrigins(t *testing.T) {
	s := newStack(t)
	for _, h := range []http.Header{{"Origin": {"https://evil.example"}}, {"Sec-Fetch-Site": {"cross-site"}}} {
		u := s.user()
		status, body := u.postRaw("/signin", url.Values{"token": {s.tokens[ota.RoleAdmin]}}, h)
		if status != http.StatusForbidden {
			t.Errorf("sign-in with %v: status %d, want 403", h, status)
		}
		mustContain(t, "cross-origin sign-in", body, "did not come from this console")
		if _, body := u.get("/"); !strings.Contains(body, "Sign in to otter") {
			t.Errorf("a cross-origin sign-in with %v opened a session", h)
		}
	}
}

func TestSigninCookieIsHttpOnlyStrictAndHidesTheToken(t *testing.T) {
	s := newStack(t)
	u := s.user()
	u.http.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	req, _ := http.NewRequest(http.MethodPost, s.srv.URL+"/signin",
		strings.NewReader(url.Values{"token": {s.tokens[ota.RoleAdmin]}, "next": {"/events"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := u.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); loc != "/events" {
		t.Errorf("after sign-in the browser goes to %q, want /events", loc)
	}
	var session *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "otter_session" {
			session = c
		}
	}
	switch {
	case session == nil:
		t.Fatal("no session cookie")
	case !session.HttpOnly || session.SameSite != http.SameSiteStrictMode:
		t.Errorf("session cookie: HttpOnly %v, SameSite %v", session.HttpOnly, session.SameSite)
	case strings.Contains(session.Value, s.tokens[ota.RoleAdmin]) || strings.Contains(session.Value, strings.TrimPrefix(s.tokens[ota.RoleAdmin], "otr_")):
		t.Errorf("the cookie holds the token in clear: %s", session.Value)
	case session.MaxAge <= 0 || session.MaxAge > int((12*time.Hour).Seconds()):
		t.Errorf("session cookie Max-Age %d", session.MaxAge)
	}
}

func TestSigninRedirectStaysOnSite(t *testing.T) {
	s := newStack(t)
	for _, next := range []string{"//evil.example/", "https://evil.example/", "/\\evil.example"} {
		u := s.user()
		u.http.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		req, _ := http.NewRequest(http.MethodPost, s.srv.URL+"/signin",
			strings.NewReader(url.Values{"token": {s.tokens[ota.RoleViewer]}, "next": {next}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := u.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if loc := resp.Header.Get("Location"); loc != "/" {
			t.Errorf("next=%q sends the browser to %q, want /", next, loc)
		}
	}
}

func TestSessionsEnd(t *testing.T) {
	s := newStack(t)
	t.Run("signout", func(t *testing.T) {
		u := s.signedIn(ota.RoleViewer)
		status, body := u.post("/signout", nil)
		if status != http.StatusOK || !strings.Contains(body, "Sign in to otter") {
			t.Fatalf("sign out: %d\n%s", status, text(body))
		}
		if _, body := u.get("/"); !strings.Contains(body, "Sign in to otter") {
			t.Errorf("after sign-out the overview is still shown")
		}
	})
	t.Run("expiry", func(t *testing.T) {
		u := s.signedIn(ota.RoleViewer)
		s.clock.Add(11 * time.Hour)
		if _, body := u.get("/"); !strings.Contains(body, "Overview") {
			t.Errorf("the session ended before 12 hours")
		}
		s.clock.Add(time.Hour + time.Second)
		if _, body := u.get("/"); !strings.Contains(body, "Sign in to otter") {
			t.Errorf("the session outlived 12 hours")
		}
	})
	t.Run("revoked token", func(t *testing.T) {
		name := "short-lived"
		u := s.user()
		u.signin(s.token(name, ota.RoleOperator))
		tokens, _, err := s.st.ListTokens(s.ctx, store.Page{})
		if err != nil {
			t.Fatal(err)
		}
		for _, tok := range tokens {
			if tok.Name == name {
				if err := s.st.RevokeToken(s.ctx, tok.ID); err != nil {
					t.Fatal(err)
				}
			}
		}
		if _, body := u.get("/"); !strings.Contains(body, "Sign in to otter") {
			t.Errorf("a revoked token's session goes on")
		}
	})
	t.Run("forged cookie", func(t *testing.T) {
		u := s.user()
		base, _ := url.Parse(s.srv.URL)
		u.http.Jar.SetCookies(base, []*http.Cookie{{Name: "otter_session", Value: "AAAA" + strings.Repeat("x", 100)}})
		if _, body := u.get("/"); !strings.Contains(body, "Sign in to otter") {
			t.Errorf("a forged cookie opened a session")
		}
	})
}

// TestPostsAreGuarded checks every action: from another site, or by a
// viewer (the API refuses the viewer's token), it is refused and changes
// nothing.
func TestPostsAreGuarded(t *testing.T) {
	s := seed(t)
	task := "/tasks/" + itoa(s.task)
	posts := []struct {
		path string
		form url.Values
	}{
		{"/products", url.Values{"key": {"new"}}},
		{"/products/demo/delete", nil},
		{"/products/demo/devices", url.Values{"key": {"x1"}}},
		{"/products/demo/devices/d1/tags", url.Values{"tags": {"a=b"}}},
		{"/products/demo/devices/d1/rotate-secret", nil},
		{"/products/demo/devices/d1/delete", nil},
		{"/firmware/" + itoa(s.firmware) + "/delete", nil},
		{"/tasks/preview", url.Values{"firmware": {itoa(s.firmware)}, "mode": {"push"}, "target_all": {"on"}}},
		{"/tasks", url.Values{"firmware": {itoa(s.firmware)}, "mode": {"push"}, "target_all": {"on"}}},
		{task + "/pause", nil},
		{task + "/cancel", nil},
		{task + "/retry", nil},
	}
	viewer := s.signedIn(ota.RoleViewer)
	events := s.countEvents()
	for _, p := range posts {
		form := url.Values{}
		for k, v := range p.form {
			form[k] = v
		}
		if status, _ := s.admin.postRaw(p.path, form, http.Header{"Origin": {"https://evil.example"}}); status != http.StatusForbidden {
			t.Errorf("POST %s from another origin: status %d, want 403", p.path, status)
		}
		if status, _ := s.admin.postRaw(p.path, form, http.Header{"Sec-Fetch-Site": {"cross-site"}}); status != http.StatusForbidden {
			t.Errorf("POST %s cross-site: status %d, want 403", p.path, status)
		}
		status, body := viewer.post(p.path, p.form)
		if status != http.StatusForbidden {
			t.Errorf("POST %s as a viewer: status %d, want 403", p.path, status)
		}
		mustContain(t, "viewer POST "+p.path, body, "needs the operator role")
	}
	if n := s.countEvents(); n != events {
		t.Errorf("refused posts changed something: %d events, want %d", n, events)
	}
	h := http.Header{"Content-Type": {"application/octet-stream"}}
	if status, _ := viewer.do(http.MethodPost, "/firmware/upload?product=demo&version=9.0.0", strings.NewReader("x"), h); status != http.StatusForbidden {
		t.Errorf("upload as a viewer: status %d, want 403", status)
	}
}

func (s *seeded) countEvents() int {
	s.t.Helper()
	n, page := 0, store.Page{Limit: store.MaxPageSize}
	for {
		items, next, err := s.st.ListEvents(s.ctx, store.EventFilter{}, page)
		if err != nil {
			s.t.Fatal(err)
		}
		for _, e := range items {
			if e.Kind != ota.KindJob { // the engine moves jobs on its own
				n++
			}
		}
		if next == "" {
			return n
		}
		page.After = next
	}
}

// TestViewerSeesNoActions: a viewer's pages offer no form that changes
// anything (sign-out aside) and no link to one.
func TestViewerSeesNoActions(t *testing.T) {
	s := seed(t)
	viewer := s.signedIn(ota.RoleViewer)
	for _, path := range []string{"/", "/products", "/products/demo", "/products/demo/devices/d1", "/firmware",
		"/firmware/" + itoa(s.firmware), "/tasks", "/tasks/" + itoa(s.task), "/tasks/" + itoa(s.task) + "/live", "/events"} {
		_, body := viewer.get(path)
		if n := strings.Count(body, `method="post"`); n > 1 || n == 1 && !strings.Contains(body, `action="/signout"`) {
			t.Errorf("GET %s as a viewer shows %d post forms", path, n)
		}
		for _, action := range []string{"/firmware/upload", "/tasks/new", "hx-post"} {
			if strings.Contains(body, action) {
				t.Errorf("GET %s as a viewer offers %s", path, action)
			}
		}
	}
	for _, path := range []string{"/firmware/upload", "/tasks/new"} {
		if status, _ := viewer.get(path); status != http.StatusForbidden {
			t.Errorf("GET %s as a viewer: status %d, want 403", path, status)
		}
	}
}
