package server_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/otter-ota/otter/client"
	"github.com/otter-ota/otter/internal/deadline"
	"github.com/otter-ota/otter/internal/server"
	"github.com/otter-ota/otter/internal/store/storetest"
	"github.com/otter-ota/otter/sdk/wire"
)

// quick are HTTP timeouts a test outlasts in a second or two. The
// transfer window is two seconds: on loopback, TCP queues up to a few
// megabytes, and the answer's last write waits until a steady reader has
// drained them, which on a loaded machine took over a second.
var quick = deadline.Timeouts{
	Header: time.Second, Body: 500 * time.Millisecond, Write: 500 * time.Millisecond, Idle: 2 * time.Second,
	Transfer: deadline.Policy{Window: 2 * time.Second, MinBytes: 8 << 10},
}

// cutWithin is how soon after its timeout a stalled client must be cut:
// generous for a loaded machine, far below "held forever".
const cutWithin = 3 * time.Second

func startQuick(t *testing.T) *otter {
	return startIn(t, t.TempDir(), storetest.URL(t), func(c *server.Config) { c.HTTPTimeouts = quick })
}

// exchange sends a request's head, then its body in pieces of piece bytes
// every gap, and returns the answer's status (0 when the server cut the
// connection first) and how long the exchange took.
func (o *otter) exchange(head string, body []byte, piece int, gap time.Duration) (int, time.Duration) {
	o.t.Helper()
	u, _ := url.Parse(o.srv.HTTPURL())
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		o.t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	fmt.Fprintf(conn, "%s\r\nHost: %s\r\nContent-Length: %d\r\n\r\n", head, u.Host, len(body))
	go func() {
		for len(body) > 0 {
			n := min(piece, len(body))
			if _, err := conn.Write(body[:n]); err != nil {
				return
			}
			body = body[n:]
			time.Sleep(gap) // the client's pace, not synchronisation
		}
	}()
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, time.Since(start)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, time.Since(start)
}

// A client that sends its headers and then trickles its body is cut
// within the body timeout on the routes anyone can reach, so that such
// clients cannot pile up until the process runs out of file descriptors.
func TestTrickledBodiesAreCut(t *testing.T) {
	o := startQuick(t)
	body := bytes.Repeat([]byte("x"), 200)
	for _, head := range []string{
		"POST /signin HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded",
		"POST /api/v1/products HTTP/1.1\r\nContent-Type: application/json",
		"POST /device/v1/inform HTTP/1.1\r\nContent-Type: application/json",
		"POST /device/v1/inform HTTP/1.1\r\nContent-Type: application/json\r\nAuthorization: Basic ZGVtby9kMTpub3Bl",
		"POST /api/v1/firmware?product=demo&version=9.0.0 HTTP/1.1\r\nAuthorization: Bearer otr_e2e-admin-token-for-tests-only",
	} {
		status, took := o.exchange(head, body, 1, 50*time.Millisecond)
		if took > quick.Transfer.Window+cutWithin {
			line, _, _ := strings.Cut(head, "\r\n")
			t.Errorf("%s trickled: held %v (HTTP %d), want a cut within %v", line, took, status, quick.Body)
		}
	}
	resp, err := http.Get(o.srv.HTTPURL() + "/healthz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz after the trickles: %v %v", resp, err)
	}
	resp.Body.Close()
}

// A firmware upload slower than the body and write timeouts, but
// steady, is stored whole; so is a slow, steady download of it.
func TestSlowSteadyUploadAndDownloadSucceed(t *testing.T) {
	o := startQuick(t)
	if _, err := o.api.CreateProduct(o.ctx(), client.ProductCreate{Key: "demo", Name: "Demo"}); err != nil {
		t.Fatal(err)
	}
	image := bytes.Repeat([]byte("firmware"), 8<<10) // 64 KiB: 4 KiB every 150 ms, 2.25 s
	status, took := o.exchange("POST /api/v1/firmware?product=demo&version=2.0.0 HTTP/1.1\r\n"+
		"Authorization: Bearer otr_e2e-admin-token-for-tests-only", image, 4<<10, 150*time.Millisecond)
	if status != http.StatusCreated || took < 3*quick.Body {
		t.Fatalf("slow upload: HTTP %d after %v, want 201 after more than %v", status, took, 3*quick.Body)
	}
	list, err := o.api.ListFirmware(o.ctx(), client.FirmwareFilter{Product: "demo"}, client.ListOptions{})
	if err != nil || len(list.Items) != 1 || list.Items[0].Size != int64(len(image)) {
		t.Fatalf("firmware after the slow upload: %+v %v", list, err)
	}

	fw, image := o.firmware("demo", "3.0.0", 8<<20)
	u := o.downloadURL(fw, "d1")
	start := time.Now()
	got, err := readSlowly(u, 64<<10, 20*time.Millisecond)
	if err != nil || !bytes.Equal(got, image) {
		t.Fatalf("slow download: %d of %d bytes: %v", len(got), len(image), err)
	}
	if took := time.Since(start); took < 3*quick.Write {
		t.Fatalf("the download took %v: too fast to prove anything", took)
	}
}

// readSlowly downloads u reading piece bytes every gap.
func readSlowly(u string, piece int, gap time.Duration) ([]byte, error) {
	resp, err := http.Get(u)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	var buf bytes.Buffer
	for {
		n, err := io.CopyN(&buf, resp.Body, int64(piece))
		if err == io.EOF || (err == nil && n < int64(piece)) {
			return buf.Bytes(), nil
		}
		if err != nil {
			return buf.Bytes(), err
		}
		time.Sleep(gap) // the client's pace, not synchronisation
	}
}

// downloadURL creates device key, starts a task for it and returns the
// download URL of its upgrade command.
func (o *otter) downloadURL(fw *client.Firmware, key string) string {
	o.t.Helper()
	d, err := o.api.CreateDevice(o.ctx(), fw.Product, client.DeviceCreate{Key: key})
	if err != nil {
		o.t.Fatal(err)
	}
	dev, _, err := o.dialMQTT(fw.Product, key, d.Secret)
	if err != nil {
		o.t.Fatal(err)
	}
	dev.subscribe(dev.topic(wire.KindUpgrade))
	dev.publish(dev.topic(wire.KindInform), wire.Inform{Modules: map[string]string{"default": "1.0.0"}})
	if _, err := o.api.CreateTask(o.ctx(), client.TaskCreate{FirmwareID: fw.ID, Target: client.Target{Devices: []string{key}}}); err != nil {
		o.t.Fatal(err)
	}
	u, err := wire.DecodeUpgrade(dev.next(wire.KindUpgrade))
	if err != nil {
		o.t.Fatal(err)
	}
	return u.URL
}

// Downloads beyond --max-downloads are answered 503 with Retry-After, so
// that devices come back later instead of exhausting file descriptors.
func TestDownloadsBeyondTheCapAreRefused(t *testing.T) {
	o := startIn(t, t.TempDir(), storetest.URL(t), func(c *server.Config) { c.MaxDownloads = 1 })
	if _, err := o.api.CreateProduct(o.ctx(), client.ProductCreate{Key: "demo", Name: "Demo"}); err != nil {
		t.Fatal(err)
	}
	checkSecondDownloadRefused(t, o)
}

// checkSecondDownloadRefused holds one download of a file far larger than
// the socket buffers open, reading nothing, and checks that a second one,
// beyond a cap of 1, is answered 503 with a Retry-After of 1-30 seconds.
func checkSecondDownloadRefused(t *testing.T, o *otter) {
	t.Helper()
	fw, _ := o.firmware("demo", "2.0.0", 32<<20)
	u := o.downloadURL(fw, "d1")
	held, err := http.Get(u) // reads nothing: the server stays in the first download
	if err != nil || held.StatusCode != http.StatusOK {
		t.Fatalf("first download: %v %v", held, err)
	}
	defer held.Body.Close()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	ra, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	if resp.StatusCode != http.StatusServiceUnavailable || err != nil || ra < 1 || ra > 30 {
		t.Fatalf("second download: HTTP %d Retry-After %q, want 503 with Retry-After 1-30", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}

// --secure-cookies marks the console's cookies Secure for a console behind
// a TLS proxy; on plain HTTP without it they are not (browsers would drop
// them).
func TestSecureCookies(t *testing.T) {
	for _, secure := range []bool{false, true} {
		o := startIn(t, t.TempDir(), storetest.URL(t), func(c *server.Config) { c.SecureCookies = secure })
		cookies := signinCookies(t, http.DefaultClient, o.srv.HTTPURL(), "otr_e2e-admin-token-for-tests-only")
		if len(cookies) == 0 {
			t.Fatal("the sign-in set no cookie")
		}
		for _, c := range cookies {
			if c.Secure != secure {
				t.Errorf("SecureCookies %v: cookie %s has Secure %v", secure, c.Name, c.Secure)
			}
		}
	}
}

// signinCookies signs in to the console at base with token, as a browser
// posts the sign-in form, and returns the cookies the answer sets.
func signinCookies(t *testing.T, hc *http.Client, base, token string) []*http.Cookie {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+"/signin", strings.NewReader(url.Values{"token": {token}}.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", base)
	noFollow := *hc // the redirect's cookies, not the next page's
	noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := noFollow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in: HTTP %d, want 303", resp.StatusCode)
	}
	return resp.Cookies()
}
