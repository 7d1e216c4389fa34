package brokerauth_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/otter-ota/otter/internal/brokerauth"
	"github.com/otter-ota/otter/internal/credential"
	"github.com/otter-ota/otter/internal/ota"
)

const (
	secret     = "broker-secret-for-tests"
	svcUser    = "otter-svc"
	svcPass    = "svc-password"
	devSecret  = "device-secret-d1"
	ownTree    = "otter/v1/demo/d1/"
	otherTree  = "otter/v1/demo/d2/"
	goAuthRead = 1
)

// registry knows demo/d1 (secret devSecret); down makes every lookup fail.
type registry struct{ down bool }

func (r registry) Credentials(_ context.Context, product, key string) (ota.DeviceCredentials, error) {
	if r.down {
		return ota.DeviceCredentials{}, errors.New("connection refused")
	}
	if product != "demo" || key != "d1" {
		return ota.DeviceCredentials{}, ota.Errorf(ota.ENOTFOUND, "no device %s/%s", product, key)
	}
	return ota.DeviceCredentials{DeviceID: 1, SecretHash: credential.Hash(devSecret)}, nil
}

func serve(t *testing.T, r registry) string {
	t.Helper()
	h, err := brokerauth.Handler(brokerauth.Config{Secret: secret, ServiceUser: svcUser, ServicePassword: svcPass, Credentials: r})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

// post sends body (a JSON object, or url.Values as a form) with the secret
// in the header; it returns the status and the decoded answer.
func post(t *testing.T, base, path string, body any, header bool) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	ct := "application/json"
	if f, ok := body.(url.Values); ok {
		rd, ct = strings.NewReader(f.Encode()), "application/x-www-form-urlencoded"
	} else {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	u := base + path
	if !header {
		u += "?secret=" + url.QueryEscape(secret)
	}
	req, err := http.NewRequest(http.MethodPost, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", ct)
	if header {
		req.Header.Set(brokerauth.SecretHeader, secret)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

type m = map[string]any

func TestEMQXAnswers(t *testing.T) {
	base := serve(t, registry{})
	for _, tc := range []struct {
		name      string
		path      string
		body      m
		result    string
		superuser bool
	}{
		{"device with its secret", brokerauth.PathAuth, m{"username": "demo/d1", "password": devSecret, "clientid": "c1"}, "allow", false},
		{"device with a wrong secret", brokerauth.PathAuth, m{"username": "demo/d1", "password": "nope"}, "deny", false},
		{"unknown device", brokerauth.PathAuth, m{"username": "demo/d9", "password": devSecret}, "deny", false},
		{"user name not product/device", brokerauth.PathAuth, m{"username": "d1", "password": devSecret}, "deny", false},
		{"no password", brokerauth.PathAuth, m{"username": "demo/d1"}, "deny", false},
		{"otter's service account", brokerauth.PathAuth, m{"username": svcUser, "password": svcPass}, "allow", true},
		{"otter's service account, wrong password", brokerauth.PathAuth, m{"username": svcUser, "password": "x"}, "deny", false},
		{"publish in its own tree", brokerauth.PathACL, m{"username": "demo/d1", "topic": ownTree + "inform", "action": "publish"}, "allow", false},
		{"publish in another device's tree", brokerauth.PathACL, m{"username": "demo/d1", "topic": otherTree + "inform", "action": "publish"}, "deny", false},
		{"publish outside otter's topics", brokerauth.PathACL, m{"username": "demo/d1", "topic": "$SYS/x", "action": "publish"}, "deny", false},
		{"subscribe to its upgrades", brokerauth.PathACL, m{"username": "demo/d1", "topic": ownTree + "upgrade", "action": "subscribe"}, "allow", false},
		{"subscribe to its whole tree", brokerauth.PathACL, m{"username": "demo/d1", "topic": ownTree + "#", "action": "subscribe"}, "allow", false},
		{"subscribe to its uplinks", brokerauth.PathACL, m{"username": "demo/d1", "topic": ownTree + "inform", "action": "subscribe"}, "deny", false},
		{"subscribe to every device", brokerauth.PathACL, m{"username": "demo/d1", "topic": "otter/v1/demo/+/upgrade", "action": "subscribe"}, "deny", false},
		{"subscribe to another device", brokerauth.PathACL, m{"username": "demo/d1", "topic": otherTree + "upgrade", "action": "subscribe"}, "deny", false},
		{"unknown action", brokerauth.PathACL, m{"username": "demo/d1", "topic": ownTree + "inform", "action": "all"}, "deny", false},
		{"service account subscribes to the shared uplinks", brokerauth.PathACL, m{"username": svcUser, "topic": "$share/otter/otter/v1/+/+/inform", "action": "subscribe"}, "allow", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, out := post(t, base, tc.path, tc.body, true)
			if status != http.StatusOK || out["result"] != tc.result || out["is_superuser"] != tc.superuser {
				t.Fatalf("HTTP %d %v, want 200 result %s is_superuser %v", status, out, tc.result, tc.superuser)
			}
		})
	}
}

func TestGoAuthAnswers(t *testing.T) {
	base := serve(t, registry{})
	for _, tc := range []struct {
		name   string
		path   string
		body   any
		status int
	}{
		{"device with its secret", brokerauth.PathGoAuthUser, m{"username": "demo/d1", "password": devSecret, "clientid": "c1"}, 200},
		{"device with its secret, as a form", brokerauth.PathGoAuthUser, url.Values{"username": {"demo/d1"}, "password": {devSecret}}, 200},
		{"wrong secret", brokerauth.PathGoAuthUser, m{"username": "demo/d1", "password": "nope"}, 403},
		{"write in its own tree", brokerauth.PathGoAuthACL, m{"username": "demo/d1", "topic": ownTree + "progress", "acc": 2}, 200},
		{"write in another tree", brokerauth.PathGoAuthACL, m{"username": "demo/d1", "topic": otherTree + "progress", "acc": 2}, 403},
		{"read its upgrade", brokerauth.PathGoAuthACL, m{"username": "demo/d1", "topic": ownTree + "upgrade", "acc": goAuthRead}, 200},
		{"subscribe to its reply", brokerauth.PathGoAuthACL, m{"username": "demo/d1", "topic": ownTree + "reply", "acc": 4}, 200},
		{"subscribe to another's reply", brokerauth.PathGoAuthACL, m{"username": "demo/d1", "topic": otherTree + "reply", "acc": 4}, 403},
		{"read and write its upgrade topic", brokerauth.PathGoAuthACL, m{"username": "demo/d1", "topic": ownTree + "upgrade", "acc": 3}, 200},
		{"read and write its inform topic", brokerauth.PathGoAuthACL, m{"username": "demo/d1", "topic": ownTree + "inform", "acc": 3}, 403},
		{"unknown access", brokerauth.PathGoAuthACL, m{"username": "demo/d1", "topic": ownTree + "inform", "acc": 8}, 403},
		{"as a form", brokerauth.PathGoAuthACL, url.Values{"username": {"demo/d1"}, "topic": {otherTree + "inform"}, "acc": {"2"}}, 403},
		{"malformed JSON", brokerauth.PathGoAuthACL, m{"username": 7}, 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, out := post(t, base, tc.path, tc.body, false) // the secret in the query: go-auth sets no headers
			if status != tc.status || out["ok"] != (tc.status == 200) {
				t.Fatalf("HTTP %d %v, want %d ok %v", status, out, tc.status, tc.status == 200)
			}
		})
	}
}

// Without the secret nothing is answered; with the registry down nothing
// is allowed.
func TestSecretAndOutage(t *testing.T) {
	base := serve(t, registry{})
	for _, u := range []string{base + brokerauth.PathAuth, base + brokerauth.PathAuth + "?secret=wrong", base + brokerauth.PathGoAuthACL} {
		resp, err := http.Post(u, "application/json", strings.NewReader(`{"username":"demo/d1","password":"`+devSecret+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("POST %s without the right secret: HTTP %d, want 401", u, resp.StatusCode)
		}
	}
	resp, err := http.Get(base + brokerauth.PathAuth + "?secret=" + secret)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET: HTTP %d, want 405", resp.StatusCode)
	}

	down := serve(t, registry{down: true})
	login := m{"username": "demo/d1", "password": devSecret}
	if status, out := post(t, down, brokerauth.PathAuth, login, true); status != http.StatusServiceUnavailable || out["result"] != "ignore" {
		t.Fatalf("EMQX login with the registry down: HTTP %d %v, want 503 ignore", status, out)
	}
	if status, out := post(t, down, brokerauth.PathGoAuthUser, login, true); status != http.StatusServiceUnavailable || out["ok"] != false {
		t.Fatalf("go-auth login with the registry down: HTTP %d %v, want 503 not ok", status, out)
	}
}
