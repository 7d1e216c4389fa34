package console_test

import (
	"bytes"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/otter-ota/otter/internal/console"
	"github.com/otter-ota/otter/internal/store"
)

// Every route that takes a POST refuses a signed-in admin's post that a
// browser marks as coming from another site (by Origin or Sec-Fetch-Site),
// whatever the body (a form, a multipart file, a raw file), and nothing
// changes. The routes come from the console's own table, so a route added
// later is covered without editing this test.
func TestEveryPostRefusesOtherOrigins(t *testing.T) {
	s := seed(t)
	paths := s.postPaths()
	if len(paths) < 12 {
		t.Fatalf("only %d state-changing paths found: %v", len(paths), paths)
	}
	forged := []http.Header{
		{"Origin": {"https://evil.example"}},
		{"Origin": {"null"}},
		{"Sec-Fetch-Site": {"cross-site"}},
		{"Sec-Fetch-Site": {"same-site"}, "Origin": {s.srv.URL}},
	}
	before := s.snapshot()
	for _, path := range paths {
		for _, b := range csrfBodies() {
			for _, h := range forged {
				status := s.admin.postFrom(path, b, h)
				if status != http.StatusForbidden {
					t.Errorf("POST %s as %s with %v: HTTP %d, want 403", path, b.name, h, status)
				}
			}
		}
	}
	if after := s.snapshot(); after != before {
		t.Fatalf("cross-origin posts changed the state:\nbefore %s\nafter  %s", before, after)
	}
}

// postPaths turns the console's POST patterns into real paths on the
// seeded data, one per task action.
func (s *seeded) postPaths() []string {
	var out []string
	for _, pattern := range s.console.PostPatterns() {
		_, path, _ := strings.Cut(pattern, " ")
		if path == pattern {
			path = "/" + strings.TrimPrefix(pattern, "/") + "no-such-page"
		}
		id := s.firmware
		if strings.HasPrefix(path, "/tasks/") {
			id = s.task
		}
		path = strings.NewReplacer("{product}", "demo", "{device}", "d4", "{id}", fmt.Sprint(id)).Replace(path)
		if strings.Contains(path, "{action}") {
			actions := console.TaskActions()
			slices.Sort(actions)
			for _, a := range actions {
				out = append(out, strings.Replace(path, "{action}", a, 1))
			}
			continue
		}
		out = append(out, path)
	}
	return out
}

// csrfBody is a request body that would do something if posted from the
// console's own page.
type csrfBody struct {
	name, contentType string
	body              func() []byte
}

func csrfBodies() []csrfBody {
	form := url.Values{"key": {"x1"}, "name": {"x"}, "token": {"otr_x"}, "tags": {"site=evil"},
		"firmware": {"1"}, "mode": {"push"}, "target_all": {"on"}}.Encode()
	var mp bytes.Buffer
	mw := multipart.NewWriter(&mp)
	fw, _ := mw.CreateFormFile("file", "devices.csv")
	io.WriteString(fw, "x2\nx3\n")
	mw.Close()
	return []csrfBody{
		{"a form", "application/x-www-form-urlencoded", func() []byte { return []byte(form) }},
		{"a multipart file", mw.FormDataContentType(), func() []byte { return mp.Bytes() }},
		{"a raw file", "application/octet-stream", func() []byte { return []byte("firmware image") }},
	}
}

// postFrom posts b to path with the session cookie, the query of a
// firmware upload, and the headers of h.
func (u *user) postFrom(path string, b csrfBody, h http.Header) int {
	u.t.Helper()
	h = h.Clone()
	h.Set("Content-Type", b.contentType)
	status, _ := u.do(http.MethodPost, path+"?product=demo&version=9.9.9", bytes.NewReader(b.body()), h)
	return status
}

// snapshot describes what an operator's post could change: the admin's
// events (every change records one), products, devices with their tags
// and secrets, firmware, and the task's state.
func (s *seeded) snapshot() string {
	s.t.Helper()
	var b strings.Builder
	events, _, err := s.st.ListEvents(s.ctx, store.EventFilter{Actor: "admin-token"}, store.Page{Limit: store.MaxPageSize})
	must(s.t, err)
	fmt.Fprintf(&b, "events %d;", len(events))
	products, _, err := s.st.ListProducts(s.ctx, store.Page{Limit: store.MaxPageSize})
	must(s.t, err)
	for _, p := range products {
		fmt.Fprintf(&b, " product %s;", p.Key)
	}
	devices, _, err := s.st.ListDevices(s.ctx, store.DeviceFilter{Product: "demo"}, store.Page{Limit: store.MaxPageSize})
	must(s.t, err)
	for _, d := range devices {
		cred, err := s.st.Credentials(s.ctx, "demo", d.Key)
		must(s.t, err)
		fmt.Fprintf(&b, " device %s %v %x;", d.Key, d.Tags, cred.SecretHash)
	}
	fws, _, err := s.st.ListFirmware(s.ctx, store.FirmwareFilter{}, store.Page{Limit: store.MaxPageSize})
	must(s.t, err)
	fmt.Fprintf(&b, " firmware %d;", len(fws))
	tasks, _, err := s.st.ListTasks(s.ctx, store.TaskFilter{}, store.Page{Limit: store.MaxPageSize})
	must(s.t, err)
	for _, task := range tasks {
		fmt.Fprintf(&b, " task %d %s;", task.ID, task.State)
	}
	return b.String()
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
