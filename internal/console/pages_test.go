package console_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/store"
)

// uploadFirmware uploads body as a firmware through the console's upload
// route, as the page's script does, and returns the API's answer.
func (u *user) uploadFirmware(query url.Values, body string) (int, map[string]any) {
	u.t.Helper()
	h := http.Header{"Content-Type": {"application/octet-stream"}}
	status, b := u.do(http.MethodPost, "/firmware/upload?"+query.Encode(), strings.NewReader(body), h)
	var out map[string]any
	if err := json.Unmarshal([]byte(b), &out); err != nil {
		u.t.Fatalf("upload answered %d, not JSON: %v\n%s", status, err, b)
	}
	return status, out
}

// seeded is a stack with a product of six devices, a firmware uploaded
// through the console and a running task created through its form.
type seeded struct {
	*stack
	admin    *user
	firmware int64
	task     int64
}

func seed(t *testing.T) *seeded {
	t.Helper()
	s := &seeded{stack: newStack(t)}
	s.fleet("demo", 6)
	s.admin = s.signedIn(ota.RoleAdmin)
	status, fw := s.admin.uploadFirmware(url.Values{"product": {"demo"}, "version": {"1.1.0"}, "param": {"channel=stable"}}, "firmware image")
	if status != http.StatusCreated {
		t.Fatalf("upload: %d %v", status, fw)
	}
	s.firmware = int64(fw["id"].(float64))
	s.connect("demo", "d1", "d2", "d3")
	s.task = s.createTask(url.Values{"firmware": {fmt.Sprint(s.firmware)}, "name": {"spring"}, "mode": {"push"}, "target_all": {"on"}})
	s.upgrade("demo", "d1")
	s.fail("demo", "d2", "download_failed")
	return s
}

var taskURLRE = regexp.MustCompile(`^/tasks/(\d+)$`)

// createTask posts the task form and returns the new task's id.
func (s *seeded) createTask(v url.Values) int64 {
	s.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.srv.URL+"/tasks", strings.NewReader(v.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", s.srv.URL)
	client := *s.admin.http
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := client.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	resp.Body.Close()
	m := taskURLRE.FindStringSubmatch(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusSeeOther || m == nil {
		s.t.Fatalf("create task: status %d, location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	id, _ := strconv.ParseInt(m[1], 10, 64)
	return id
}

// TestListsPage checks that lists are paged by cursor and that the next
// page continues where the first ended.
func TestListsPage(t *testing.T) {
	s := newStack(t)
	s.fleet("big", 120)
	u := s.signedIn(ota.RoleViewer)
	_, first := u.get("/products/big")
	next := regexp.MustCompile(`href="([^"]*after=[^"]*)" rel="next"`).FindStringSubmatch(first)
	if next == nil {
		t.Fatalf("the first page of 120 devices has no next link")
	}
	if strings.Contains(text(first), " d51 ") {
		t.Errorf("the first page lists more than 50 devices")
	}
	_, second := u.get(strings.ReplaceAll(next[1], "&amp;", "&"))
	mustContain(t, "second page", second, "d51", "d100", "First page")
	if strings.Contains(text(second), " d50 ") {
		t.Errorf("the second page repeats the first")
	}
}

// TestUnknownThingsAreNotFound answers 404 pages in plain words.
func TestUnknownThingsAreNotFound(t *testing.T) {
	s := newStack(t)
	u := s.signedIn(ota.RoleViewer)
	for _, path := range []string{"/nope", "/products/nope", "/products/nope/devices/x", "/firmware/999", "/firmware/abc", "/tasks/999", "/tasks/0/live"} {
		status, body := u.get(path)
		if status != http.StatusNotFound {
			t.Errorf("GET %s: status %d, want 404", path, status)
		}
		if !strings.Contains(body, `class="error"`) {
			t.Errorf("GET %s: no error message on the page", path)
		}
	}
}

// TestStatsAreCached shows that fleet counts are recounted only once the
// cache has aged.
func TestStatsAreCached(t *testing.T) {
	s := newStack(t)
	s.fleet("demo", 3)
	u := s.signedIn(ota.RoleViewer)
	_, page := u.get("/")
	mustContain(t, "overview", page, "Devices 3")
	if _, err := s.st.CreateDevices(s.ctx, []store.NewDevice{{Product: "demo", Key: "late", SecretHash: []byte("x")}}); err != nil {
		t.Fatal(err)
	}
	_, page = u.get("/")
	mustContain(t, "overview within the cache's life", page, "Devices 3")
	s.clock.Add(20 * 1e9)
	_, page = u.get("/")
	mustContain(t, "overview after the cache expired", page, "Devices 4")
}

// TestDamagedCursorsAreExplained: a hand-edited page link gets a message,
// never a server error.
func TestDamagedCursorsAreExplained(t *testing.T) {
	s := seed(t)
	for _, path := range []string{"/products?after=%21", "/products/demo?after=%21", "/firmware?after=%21", "/tasks?after=%21",
		"/events?after=%21", "/tasks/" + itoa(s.task) + "?after=%21", "/products/demo/devices/d1?after=%21"} {
		status, body := s.admin.get(path)
		if status >= 500 || status == http.StatusOK && !strings.Contains(body, "invalid page cursor") && !strings.Contains(body, "Invalid page cursor") {
			t.Errorf("GET %s: status %d without a word about the cursor", path, status)
		}
	}
}
