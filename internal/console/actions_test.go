package console_test

import (
	"encoding/csv"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/otter-ota/otter/internal/credential"
	"github.com/otter-ota/otter/internal/ota"
)

var secretRE = regexp.MustCompile(`<code class="secret">([0-9a-f]{64})</code>`)

// checkSecret fails unless secret is the device's credential now.
func (s *stack) checkSecret(product, key, secret string) {
	s.t.Helper()
	cred, err := s.st.Credentials(s.ctx, product, key)
	if err != nil {
		s.t.Fatal(err)
	}
	if !credential.Equal(cred.SecretHash, secret) {
		s.t.Errorf("the secret shown for %s/%s is not its credential", product, key)
	}
}

func TestProductActions(t *testing.T) {
	s := newStack(t)
	op := s.signedIn(ota.RoleOperator)
	status, body := op.post("/products", url.Values{"key": {"Bad Key"}})
	if status != http.StatusBadRequest {
		t.Errorf("bad product key: status %d", status)
	}
	wantFieldError(t, "bad product key", body, "key", `Product key "Bad Key" is not valid`)
	status, body = op.post("/products", url.Values{"key": {"lamp"}, "name": {"Desk lamp"}})
	if status != http.StatusOK {
		t.Fatalf("create product: %d %s", status, text(body))
	}
	mustContain(t, "new product", body, "Product created", "Desk lamp")
	s.fleet("full", 1)
	_, body = op.post("/products/full/delete", nil)
	wantFieldError(t, "delete a product with devices", body, "delete", "has 1 device")
	status, body = op.post("/products/lamp/delete", nil)
	if status != http.StatusOK {
		t.Fatalf("delete product: %d", status)
	}
	mustContain(t, "deleted product", body, "Product deleted.")
	if _, err := s.st.GetProduct(s.ctx, "lamp"); ota.ErrorCode(err) != ota.ENOTFOUND {
		t.Errorf("the product is still there: %v", err)
	}
}

func TestDeviceActions(t *testing.T) {
	s := newStack(t)
	s.fleet("lamp", 0)
	op := s.signedIn(ota.RoleOperator)
	_, body := op.post("/products/lamp/devices", url.Values{"key": {"l:1"}, "tags": {"site=paris"}})
	wantFieldError(t, "bad device key", body, "key", `Device key "l:1" is not valid`)
	_, body = op.post("/products/lamp/devices", url.Values{"key": {"l1"}, "tags": {"site"}})
	wantFieldError(t, "bad tag", body, "tags", `Tag "site" is not name=value`)
	secret := s.createDevice(op, "lamp", "l1", "site=paris\nring=beta")
	_, page := op.get("/products/lamp")
	mustContain(t, "product after a new device", page, "Devices 1")
	_, body = op.post("/products/lamp/devices", url.Values{"key": {"l1"}})
	wantFieldError(t, "duplicate device", body, "key", "l1")

	status, body := op.post("/products/lamp/devices/l1/tags", url.Values{"tags": {"site=lyon"}})
	if status != http.StatusOK {
		t.Fatalf("set tags: %d", status)
	}
	mustContain(t, "tags saved", body, "Tags saved.")
	if d, err := s.st.GetDevice(s.ctx, "lamp", "l1"); err != nil || len(d.Tags) != 1 || d.Tags["site"] != "lyon" {
		t.Errorf("tags after saving: %v %v", d.Tags, err)
	}
	_, body = op.post("/products/lamp/devices/l1/tags", url.Values{"tags": {"bad name=x"}})
	wantFieldError(t, "bad tag name", body, "tags", `Tag "bad" is not name=value`)

	_, body = op.post("/products/lamp/devices/l1/rotate-secret", nil)
	m := secretRE.FindStringSubmatch(body)
	if m == nil || m[1] == secret {
		t.Fatalf("rotate secret: no new secret shown:\n%s", text(body))
	}
	mustContain(t, "rotated", body, "The old secret has stopped working")
	s.checkSecret("lamp", "l1", m[1])

	status, body = op.post("/products/lamp/devices/l1/delete", nil)
	if status != http.StatusOK {
		t.Fatalf("delete device: %d", status)
	}
	mustContain(t, "deleted device", body, "Device deleted.")
	if _, err := s.st.GetDevice(s.ctx, "lamp", "l1"); ota.ErrorCode(err) != ota.ENOTFOUND {
		t.Errorf("the device is still there: %v", err)
	}
}

// createDevice creates a device through the form and returns the secret
// the page shows, checked against the store.
func (s *stack) createDevice(u *user, product, key, tags string) string {
	s.t.Helper()
	status, body := u.post("/products/"+product+"/devices", url.Values{"key": {key}, "tags": {tags}})
	m := secretRE.FindStringSubmatch(body)
	if status != http.StatusOK || m == nil {
		s.t.Fatalf("create device: %d, no secret shown:\n%s", status, text(body))
	}
	mustContain(s.t, "new device", body, "Copy the secret now")
	s.checkSecret(product, key, m[1])
	return m[1]
}

func TestImportDevices(t *testing.T) {
	s := newStack(t)
	s.fleet("lamp", 0)
	op := s.signedIn(ota.RoleOperator)
	csvText := "# factory batch 7\nl1,site=paris\n\nl2\nl3,site=lyon,ring=beta\n"

	status, body, _ := op.multipart("/products/lamp/import", [][2]string{{"format", "page"}, {"file", csvText}})
	if status != http.StatusOK {
		t.Fatalf("import: %d %s", status, text(body))
	}
	mustContain(t, "import", body, "3 devices imported", "Copy the secret now")
	secrets := secretRE.FindAllStringSubmatch(body, -1)
	if len(secrets) != 3 {
		t.Fatalf("the page shows %d secrets, want 3", len(secrets))
	}
	s.checkSecret("lamp", "l1", secrets[0][1])

	status, body, _ = op.multipart("/products/lamp/import", [][2]string{{"format", "page"}, {"file", "l4\nl5,site\n"}})
	if status != http.StatusBadRequest {
		t.Errorf("a bad line: status %d", status)
	}
	wantFieldError(t, "a bad CSV line", body, "file", "Line 2: tag \"site\" has no value")
	if _, err := s.st.GetDevice(s.ctx, "lamp", "l4"); ota.ErrorCode(err) != ota.ENOTFOUND {
		t.Errorf("a refused import created devices: %v", err)
	}

	status, body, header := op.multipart("/products/lamp/import", [][2]string{{"format", "csv"}, {"file", "l6\nl7\n"}})
	if status != http.StatusOK || !strings.HasPrefix(header.Get("Content-Type"), "text/csv") ||
		!strings.Contains(header.Get("Content-Disposition"), "attachment") {
		t.Fatalf("CSV download: %d %v", status, header)
	}
	rows, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	if err != nil || len(rows) != 3 || rows[0][0] != "key" || rows[1][0] != "l6" {
		t.Fatalf("the downloaded CSV: %v %q", err, body)
	}
	s.checkSecret("lamp", "l7", rows[2][1])

	for _, h := range []http.Header{{"Origin": {"https://evil.example"}}, {"Sec-Fetch-Site": {"cross-site"}}} {
		if status, _, _ := op.multipart("/products/lamp/import", [][2]string{{"format", "page"}, {"file", "l8\n"}}, h); status != http.StatusForbidden {
			t.Errorf("import with %v: status %d, want 403", h, status)
		}
	}
	if _, err := s.st.GetDevice(s.ctx, "lamp", "l8"); ota.ErrorCode(err) != ota.ENOTFOUND {
		t.Errorf("a cross-origin import created devices: %v", err)
	}
}

func TestFirmwareUploadAndDelete(t *testing.T) {
	s := newStack(t)
	s.fleet("demo", 1)
	op := s.signedIn(ota.RoleOperator)
	image := strings.Repeat("firmware bytes ", 1000)
	status, fw := op.uploadFirmware(url.Values{"product": {"demo"}, "version": {"2.0.0"}, "from": {"1.0.0"}, "description": {"spring"}}, image)
	if status != http.StatusCreated || fw["size"].(float64) != float64(len(image)) {
		t.Fatalf("upload: %d %v", status, fw)
	}
	id := itoa(int64(fw["id"].(float64)))
	status, problem := op.uploadFirmware(url.Values{"product": {"demo"}, "version": {"2.0.0"}}, "again")
	if status != http.StatusConflict || !strings.Contains(problem["detail"].(string), "exists already") {
		t.Errorf("duplicate upload: %d %v", status, problem)
	}
	h := http.Header{"Content-Type": {"application/octet-stream"}, "Accept": {"application/json"}, "Origin": {"https://evil.example"}}
	status, body := op.do(http.MethodPost, "/firmware/upload?product=demo&version=3.0.0", strings.NewReader("x"), h)
	if status != http.StatusForbidden || !strings.Contains(body, `"code":"forbidden"`) {
		t.Errorf("upload from another origin: %d %s, want a 403 problem", status, body)
	}
	h.Del("Origin")
	anonymous := s.user()
	status, body = anonymous.do(http.MethodPost, "/firmware/upload?product=demo&version=3.0.0", strings.NewReader("x"), h)
	if status != http.StatusUnauthorized || !strings.Contains(body, "session has ended") {
		t.Errorf("upload without a session: %d %s, want a 401 problem", status, body)
	}

	status, file := op.get("/firmware/" + id + "/file")
	if status != http.StatusOK || file != image {
		t.Errorf("download through the console: %d, %d bytes", status, len(file))
	}
	_, page := op.get("/firmware/" + id)
	mustContain(t, "firmware page", page, "1.0.0", "spring", "valid: it verifies", "not required")

	s.createTaskVia(op, url.Values{"firmware": {id}, "mode": {"push"}, "target_all": {"on"}})
	_, page = op.post("/firmware/"+id+"/delete", nil)
	mustContain(t, "delete a used firmware", page, "is used by 1 task that is not finished (scheduled, running or paused)")

	status, fw = op.uploadFirmware(url.Values{"product": {"demo"}, "version": {"2.1.0"}}, "unused")
	if status != http.StatusCreated {
		t.Fatalf("upload: %d %v", status, fw)
	}
	status, page = op.post("/firmware/"+itoa(int64(fw["id"].(float64)))+"/delete", nil)
	if status != http.StatusOK {
		t.Fatalf("delete firmware: %d", status)
	}
	mustContain(t, "deleted firmware", page, "Firmware deleted.")
}

// createTaskVia posts the task form as u and fails unless a task page follows.
func (s *stack) createTaskVia(u *user, v url.Values) string {
	s.t.Helper()
	status, body := u.post("/tasks", v)
	if status != http.StatusOK || !strings.Contains(body, "Jobs per state") {
		s.t.Fatalf("create task: %d\n%s", status, text(body))
	}
	return body
}
