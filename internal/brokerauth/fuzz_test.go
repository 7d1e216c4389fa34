package brokerauth_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/otter-ota/otter/internal/brokerauth"
)

// Whatever a broker (or whoever holds the secret) sends, an allowed ACL
// check of a device is on a topic inside that device's own tree.
func FuzzACLAllowsOnlyTheDevicesOwnTree(f *testing.F) {
	f.Add([]byte(`{"username":"demo/d1","topic":"otter/v1/demo/d1/inform","action":"publish"}`), false)
	f.Add([]byte(`{"username":"demo/d1","topic":"otter/v1/demo/d1/#","acc":4}`), false)
	f.Add([]byte(`{"username":"demo/d1","topic":"otter/v1/demo/+/upgrade","acc":1}`), false)
	f.Add([]byte(`username=demo%2Fd1&topic=otter%2Fv1%2Fdemo%2Fd1%2Freply&acc=3`), true)
	f.Add([]byte(`{"username":"demo/d1/x","topic":"otter/v1/demo/d1/x/inform","action":"publish"}`), false)
	h, err := brokerauth.Handler(brokerauth.Config{Secret: secret, ServiceUser: svcUser, ServicePassword: svcPass, Credentials: registry{}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte, form bool) {
		for _, path := range []string{brokerauth.PathACL, brokerauth.PathGoAuthACL} {
			req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
			req.Header.Set(brokerauth.SecretHeader, secret)
			if form {
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			var out map[string]any
			_ = json.Unmarshal(rec.Body.Bytes(), &out)
			allowed := out["result"] == "allow" || out["ok"] == true
			if !allowed {
				continue
			}
			user, topic := fields(t, body, form)
			if user == svcUser {
				continue
			}
			if !strings.HasPrefix(topic, "otter/v1/"+user+"/") || strings.Count(user, "/") != 1 {
				t.Fatalf("%s allowed user %q on topic %q", path, user, topic)
			}
		}
	})
}

// fields reads the user name and topic of an allowed request as the
// handler must have.
func fields(t *testing.T, body []byte, form bool) (user, topic string) {
	if form {
		v, err := url.ParseQuery(string(body))
		if err != nil {
			t.Fatalf("a malformed form %q was allowed", body)
		}
		return v.Get("username"), v.Get("topic")
	}
	var r struct{ Username, Topic string }
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("malformed JSON %q was allowed", body)
	}
	return r.Username, r.Topic
}
