package console_test

import (
	"bytes"
	"context"
	"fmt"
	"html"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/otter-ota/otter/internal/api"
	"github.com/otter-ota/otter/internal/blob"
	"github.com/otter-ota/otter/internal/console"
	"github.com/otter-ota/otter/internal/credential"
	"github.com/otter-ota/otter/internal/engine"
	"github.com/otter-ota/otter/internal/engine/enginetest"
	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/signing"
	"github.com/otter-ota/otter/internal/store"
	"github.com/otter-ota/otter/internal/store/storetest"
	"github.com/otter-ota/otter/sdk/wire"
)

// stack is a whole otter behind one HTTP server: a real store, blob folder,
// signer, REST API at /api/, rollout engine, and the console at /.
type stack struct {
	t       *testing.T
	ctx     context.Context
	st      store.Store
	eng     *engine.Engine
	down    *enginetest.Downlink
	clock   *storetest.Clock // the console's; it runs from the real time unless moved
	srv     *httptest.Server
	console *console.Console
	tokens  map[ota.Role]string
	devices map[string]engine.Device // "product/key" -> device
}

func newStack(t *testing.T) *stack {
	t.Helper()
	s := &stack{t: t, st: storetest.Open(t), down: &enginetest.Downlink{}, clock: &storetest.Clock{},
		tokens: map[ota.Role]string{}, devices: map[string]engine.Device{}}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s.ctx = ctx
	s.eng, _ = enginetest.Start(t, engine.Config{Store: s.st, Downlink: s.down, Tick: 20 * time.Millisecond})
	a := s.newAPI()
	c, err := console.New(console.Config{Store: s.st, API: a.Handler(), Now: s.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	s.console = c
	mux := http.NewServeMux()
	mux.Handle("/api/", a.Handler())
	mux.Handle("/", c.Handler())
	s.srv = httptest.NewServer(mux)
	t.Cleanup(s.srv.Close)
	for _, role := range []ota.Role{ota.RoleViewer, ota.RoleOperator, ota.RoleAdmin} {
		s.tokens[role] = s.token(string(role)+"-token", role)
	}
	return s
}

func (s *stack) newAPI() *api.API {
	s.t.Helper()
	blobs, err := blob.NewFS(filepath.Join(s.t.TempDir(), "blobs"))
	if err != nil {
		s.t.Fatal(err)
	}
	signer, err := signing.LoadOrCreate(filepath.Join(s.t.TempDir(), "signing.pem"))
	if err != nil {
		s.t.Fatal(err)
	}
	a, err := api.New(api.Config{Store: s.st, Blobs: blobs, Signer: signer, Metrics: prometheus.NewRegistry(), Engine: s.eng})
	if err != nil {
		s.t.Fatal(err)
	}
	return a
}

// token creates an API token with a role and returns its secret.
func (s *stack) token(name string, role ota.Role) string {
	s.t.Helper()
	secret, err := credential.NewToken()
	if err != nil {
		s.t.Fatal(err)
	}
	tok := ota.Token{Name: name, Role: role}
	if err := s.st.CreateToken(s.ctx, &tok, credential.Hash(secret)); err != nil {
		s.t.Fatal(err)
	}
	return secret
}

// fleet creates a product and n devices d1..dn on version 1.0.0 of the
// default module, tagged by parity.
func (s *stack) fleet(product string, n int) {
	s.t.Helper()
	if err := s.st.CreateProduct(s.ctx, &ota.Product{Key: product, Name: "Test " + product}); err != nil {
		s.t.Fatal(err)
	}
	var nd []store.NewDevice
	for i := 1; i <= n; i++ {
		nd = append(nd, store.NewDevice{Product: product, Key: fmt.Sprintf("d%d", i), SecretHash: credential.Hash(fmt.Sprint(i)),
			Tags: map[string]string{"ring": []string{"even", "odd"}[i%2]}, Versions: map[string]string{ota.DefaultModule: "1.0.0"}})
	}
	created, err := s.st.CreateDevices(s.ctx, nd)
	if err != nil {
		s.t.Fatal(err)
	}
	for _, d := range created {
		s.devices[product+"/"+d.Key] = engine.Device{ID: d.ID, Product: d.Product, Key: d.Key}
	}
}

// connect brings devices online.
func (s *stack) connect(product string, keys ...string) {
	s.t.Helper()
	for _, k := range keys {
		if err := s.eng.Connected(s.ctx, s.devices[product+"/"+k]); err != nil {
			s.t.Fatal(err)
		}
	}
}

// upgrade drives one device through a whole successful upgrade, as a
// device on the wire would.
func (s *stack) upgrade(product, key string) {
	s.t.Helper()
	dev := s.devices[product+"/"+key]
	var u wire.Upgrade
	eventually(s.t, "an upgrade command for "+key, func() bool {
		var ok bool
		u, ok = s.down.LastUpgrade(key)
		return ok
	})
	for _, st := range []wire.State{wire.StateDownloading, wire.StateDownloaded, wire.StateInstalling, wire.StateRebooting} {
		if _, err := s.eng.Progress(s.ctx, dev, wire.Progress{Job: u.Job, Attempt: u.Attempt, State: st, Percent: 100}); err != nil {
			s.t.Fatal(err)
		}
	}
	if _, err := s.eng.Inform(s.ctx, dev, wire.Inform{Modules: map[string]string{ota.DefaultModule: u.Version}}); err != nil {
		s.t.Fatal(err)
	}
}

// fail makes one device report a failed download.
func (s *stack) fail(product, key, code string) {
	s.t.Helper()
	var u wire.Upgrade
	eventually(s.t, "an upgrade command for "+key, func() bool {
		var ok bool
		u, ok = s.down.LastUpgrade(key)
		return ok
	})
	dev := s.devices[product+"/"+key]
	if _, err := s.eng.Progress(s.ctx, dev, wire.Progress{Job: u.Job, Attempt: u.Attempt, State: wire.StateFailed, Code: code, Message: "test failure"}); err != nil {
		s.t.Fatal(err)
	}
}

// eventually polls cond until it holds or ten seconds pass.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// user is one browser session without a browser: a cookie jar, and the
// Origin header a browser sends with a post.
type user struct {
	t    *testing.T
	s    *stack
	http *http.Client
}

func (s *stack) user() *user {
	jar, err := cookiejar.New(nil)
	if err != nil {
		s.t.Fatal(err)
	}
	return &user{t: s.t, s: s, http: &http.Client{Jar: jar, Timeout: 30 * time.Second}}
}

// signedIn returns a user signed in with the token of role.
func (s *stack) signedIn(role ota.Role) *user {
	u := s.user()
	u.signin(s.tokens[role])
	return u
}

// signin signs in with token and fails the test unless it works.
func (u *user) signin(token string) {
	u.t.Helper()
	status, body := u.signinWith(token)
	if status != http.StatusOK || !strings.Contains(body, "Overview") {
		u.t.Fatalf("sign in: status %d\n%s", status, body)
	}
}

// signinWith posts the sign-in form as a browser would.
func (u *user) signinWith(token string) (int, string) {
	u.t.Helper()
	if status, page := u.get("/signin"); status != http.StatusOK {
		u.t.Fatalf("the sign-in page: status %d\n%s", status, page)
	}
	return u.postRaw("/signin", url.Values{"token": {token}}, nil)
}

// get fetches a page.
func (u *user) get(path string) (int, string) {
	u.t.Helper()
	return u.do(http.MethodGet, path, nil, nil)
}

// post submits a form from the console's own page.
func (u *user) post(path string, v url.Values) (int, string) {
	u.t.Helper()
	return u.postRaw(path, v, nil)
}

// postRaw submits a form as given, with extra headers (Origin or
// Sec-Fetch-Site among them, to forge a cross-origin post).
func (u *user) postRaw(path string, v url.Values, header http.Header) (int, string) {
	u.t.Helper()
	h := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
	for k, vs := range header {
		h[k] = vs
	}
	return u.do(http.MethodPost, path, strings.NewReader(v.Encode()), h)
}

func (u *user) do(method, path string, body io.Reader, header http.Header) (int, string) {
	u.t.Helper()
	req, err := http.NewRequest(method, u.s.srv.URL+path, body)
	if err != nil {
		u.t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	u.sameOrigin(req)
	resp, err := u.http.Do(req)
	if err != nil {
		u.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		u.t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// sameOrigin gives a post the Origin header a browser sends from the
// console's own page, unless the test set Origin or Sec-Fetch-Site.
func (u *user) sameOrigin(req *http.Request) {
	if req.Method == http.MethodGet || req.Header.Get("Origin") != "" || req.Header.Get("Sec-Fetch-Site") != "" {
		return
	}
	req.Header.Set("Origin", u.s.srv.URL)
}

// multipart posts a multipart form whose parts come in the given order,
// with the headers of header, if any.
func (u *user) multipart(path string, parts [][2]string, header ...http.Header) (int, string, http.Header) {
	u.t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, p := range parts {
		var w io.Writer
		var err error
		if p[0] == "file" {
			w, err = mw.CreateFormFile("file", "devices.csv")
		} else {
			w, err = mw.CreateFormField(p[0])
		}
		if err != nil {
			u.t.Fatal(err)
		}
		io.WriteString(w, p[1])
	}
	mw.Close()
	req, err := http.NewRequest(http.MethodPost, u.s.srv.URL+path, &buf)
	if err != nil {
		u.t.Fatal(err)
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	for _, h := range header {
		for k, vs := range h {
			req.Header[k] = vs
		}
	}
	u.sameOrigin(req)
	resp, err := u.http.Do(req)
	if err != nil {
		u.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// text returns the page's visible text, roughly: tags removed, entities
// decoded and spaces collapsed, for assertions on what an operator reads.
func text(page string) string {
	noTags := regexp.MustCompile(`(?s)<[^>]*>`).ReplaceAllString(page, " ")
	return strings.Join(strings.Fields(html.UnescapeString(noTags)), " ")
}

// mustContain fails unless the page's text holds every want.
func mustContain(t *testing.T, what, page string, want ...string) {
	t.Helper()
	txt := text(page)
	for _, w := range want {
		if !strings.Contains(txt, w) {
			t.Errorf("%s: the page does not say %q; it says:\n%s", what, w, clipText(txt))
		}
	}
}

func clipText(s string) string {
	if len(s) > 3000 {
		return s[:3000] + "..."
	}
	return s
}

func itoa(n int64) string { return fmt.Sprint(n) }

// fieldError returns the error shown next to a form field, "" for none.
func fieldError(page, field string) string {
	m := regexp.MustCompile(`id="err-` + regexp.QuoteMeta(field) + `"[^>]*>([^<]*)<`).FindStringSubmatch(page)
	if m == nil {
		return ""
	}
	return html.UnescapeString(m[1])
}

// wantFieldError fails unless the error next to field contains want.
func wantFieldError(t *testing.T, what, page, field, want string) {
	t.Helper()
	if got := fieldError(page, field); !strings.Contains(got, want) {
		t.Errorf("%s: the error next to %s is %q, want one saying %q; the page says:\n%s", what, field, got, want, clipText(text(page)))
	}
}

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
