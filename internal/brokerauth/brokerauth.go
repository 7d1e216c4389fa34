// Package brokerauth serves the HTTP endpoints an external MQTT broker asks
// at every CONNECT, publish and subscription when it delegates
// authentication and authorization to otter (EMQX's HTTP authenticator and
// authorizer, mosquitto-go-auth's HTTP backend). The answers are the
// embedded broker's own rules (internal/mqtt): a device logs in as
// {product}/{device} with its secret and may use its own topics only; the
// accounts stay in otter's registry, with no copy in the broker.
//
// Only the broker may ask: every request carries a shared secret, in the
// X-Otter-Broker-Secret header or, for brokers that cannot set headers
// (mosquitto-go-auth), in the query parameter "secret".
package brokerauth

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/otter-ota/otter/internal/mqtt"
	"github.com/otter-ota/otter/sdk/wire"
)

// SecretHeader carries the shared secret.
const SecretHeader = "X-Otter-Broker-Secret"

// The endpoints. EMQX's answer is in the body (200 {"result": ...}): EMQX
// takes any other status as "ignore", which its authorizer turns into its
// no_match default, allow unless configured. mosquitto-go-auth's is in the
// status (2xx allows, anything else denies), with a JSON body for its json
// response mode: so each broker has its own pair, safe by construction.
const (
	PathAuth       = "/broker/auth"
	PathACL        = "/broker/acl"
	PathGoAuthUser = "/broker/go-auth/user"
	PathGoAuthACL  = "/broker/go-auth/acl"
)

// Config wires the handler.
type Config struct {
	// Secret is what the broker must present; required.
	Secret string
	// ServiceUser and ServicePassword are otter's own account at the
	// broker: it logs in with them and may subscribe and publish anywhere.
	ServiceUser, ServicePassword string
	// Credentials looks devices up: the store.
	Credentials mqtt.Credentials
	Logger      *slog.Logger
}

// maxBody bounds a request: a user name, a password, a client id, a topic.
const maxBody = 16 << 10

// callTimeout bounds the store lookup of one request.
const callTimeout = 5 * time.Second

// Handler serves the four endpoints (POST only).
func Handler(cfg Config) (http.Handler, error) {
	if cfg.Secret == "" || cfg.Credentials == nil {
		return nil, errors.New("brokerauth: Config.Secret and Config.Credentials are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	h := &handler{cfg: cfg}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+PathAuth, h.serve(h.login, emqx))
	mux.HandleFunc("POST "+PathACL, h.serve(h.acl, emqx))
	mux.HandleFunc("POST "+PathGoAuthUser, h.serve(h.login, goAuth))
	mux.HandleFunc("POST "+PathGoAuthACL, h.serve(h.acl, goAuth))
	return mux, nil
}

type handler struct{ cfg Config }

// request is what either broker sends: EMQX the fields its request
// template names (docs/cluster.md gives the templates), mosquitto-go-auth
// username, password, clientid, topic and acc.
type request struct {
	Username string `json:"username"`
	Password string `json:"password"`
	ClientID string `json:"clientid"`
	Topic    string `json:"topic"`
	// Action is EMQX's: "publish" or "subscribe".
	Action string `json:"action"`
	// Acc is mosquitto's access mask: 1 read (receive), 2 write
	// (publish), 4 subscribe; 3 is read and write.
	Acc int `json:"acc"`
}

// verdict is a decision: allowed, and for a login whether it is otter's
// own (superuser) account; err, when set, means the question could not be
// answered (the store failed), which is never an allow.
type verdict struct {
	allow, superuser bool
	why              string
	err              error
}

// reply writes a verdict in one broker's format.
type reply func(w http.ResponseWriter, v verdict)

func (h *handler) serve(decide func(context.Context, request) verdict, answer reply) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !h.authorized(r) {
			http.Error(w, "missing or wrong broker secret ("+SecretHeader+" header or secret query parameter)", http.StatusUnauthorized)
			return
		}
		req, err := decode(r)
		if err != nil {
			answer(w, verdict{why: err.Error()})
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), callTimeout)
		defer cancel()
		v := decide(ctx, req)
		if v.err != nil {
			h.cfg.Logger.Warn("broker auth: cannot check; refused", "path", r.URL.Path, "user", wire.Clip(req.Username, 80), "err", v.err)
		} else if !v.allow {
			h.cfg.Logger.Debug("broker auth: denied", "path", r.URL.Path, "user", wire.Clip(req.Username, 80),
				"topic", wire.Clip(req.Topic, 120), "why", v.why)
		}
		answer(w, v)
	}
}

func (h *handler) authorized(r *http.Request) bool {
	got := r.Header.Get(SecretHeader)
	if got == "" {
		got = r.URL.Query().Get("secret")
	}
	return subtle.ConstantTimeCompare([]byte(got), []byte(h.cfg.Secret)) == 1
}

// login checks a CONNECT's user name and password.
func (h *handler) login(ctx context.Context, req request) verdict {
	if h.service(req.Username) {
		ok := subtle.ConstantTimeCompare([]byte(req.Password), []byte(h.cfg.ServicePassword)) == 1
		return verdict{allow: ok, superuser: ok, why: "otter's service account: wrong password"}
	}
	_, err := mqtt.CheckDevice(ctx, h.cfg.Credentials, req.Username, req.Password)
	switch {
	case errors.Is(err, mqtt.ErrRefused):
		return verdict{why: err.Error()}
	case err != nil:
		return verdict{why: "the registry cannot be read", err: err}
	}
	return verdict{allow: true}
}

// acl checks a publish, a subscription or a delivery: a device's own
// topics only, by the embedded broker's rule. The user name is the one the
// broker authenticated, so it names the device.
func (h *handler) acl(_ context.Context, req request) verdict {
	if h.service(req.Username) {
		return verdict{allow: true}
	}
	product, key, err := wire.ParseUsername(req.Username)
	if err != nil {
		return verdict{why: err.Error()}
	}
	publish, receive, err := access(req)
	if err != nil {
		return verdict{why: err.Error()}
	}
	if (publish && !mqtt.MayPublish(product, key, req.Topic)) || (receive && !mqtt.MayReceive(product, key, req.Topic)) {
		return verdict{why: "outside the device's own topics"}
	}
	return verdict{allow: true}
}

// access reads what is asked: publish, receive (subscribe or deliver), or
// both.
func access(req request) (publish, receive bool, err error) {
	switch req.Action {
	case "publish":
		return true, false, nil
	case "subscribe":
		return false, true, nil
	case "":
	default:
		return false, false, fmt.Errorf("unknown action %q: want publish or subscribe", wire.Clip(req.Action, 20))
	}
	const read, write, subscribe = 1, 2, 4
	if req.Acc <= 0 || req.Acc&^(read|write|subscribe) != 0 {
		return false, false, fmt.Errorf("unknown access %d: want action publish or subscribe, or acc 1, 2, 3 or 4", req.Acc)
	}
	return req.Acc&write != 0, req.Acc&(read|subscribe) != 0, nil
}

func (h *handler) service(user string) bool {
	return h.cfg.ServiceUser != "" && user == h.cfg.ServiceUser
}

// decode reads a JSON body, or a form (mosquitto-go-auth's params_mode
// form, EMQX's x-www-form-urlencoded template).
func decode(r *http.Request) (request, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return request{}, fmt.Errorf("read the request: %w", err)
	}
	if len(body) > maxBody {
		return request{}, errors.New("request too large")
	}
	var req request
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct == "application/x-www-form-urlencoded" {
		f, err := url.ParseQuery(string(body))
		if err != nil {
			return request{}, fmt.Errorf("malformed form: %w", err)
		}
		req = request{Username: f.Get("username"), Password: f.Get("password"), ClientID: f.Get("clientid"),
			Topic: f.Get("topic"), Action: f.Get("action")}
		if a := f.Get("acc"); a != "" {
			if req.Acc, err = strconv.Atoi(a); err != nil {
				return request{}, fmt.Errorf("acc %q is not a number", wire.Clip(a, 20))
			}
		}
		return req, nil
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return request{}, fmt.Errorf("malformed JSON: %w", err)
	}
	return req, nil
}

// emqx answers as EMQX 5's HTTP authenticator and authorizer read it:
// 200 with the result in the body. A check that could not be made is 503,
// which EMQX takes as "ignore": the next authenticator, or its no_match
// rule (docs/cluster.md: set it to deny).
func emqx(w http.ResponseWriter, v verdict) {
	result := "deny"
	if v.allow {
		result = "allow"
	}
	status := http.StatusOK
	if v.err != nil {
		status, result = http.StatusServiceUnavailable, "ignore"
	}
	writeJSON(w, status, map[string]any{"result": result, "is_superuser": v.superuser})
}

// goAuth answers as mosquitto-go-auth's HTTP backend reads it in its
// status and json response modes: 200 {"ok": true} allows; 403 (or 503
// when the check could not be made) denies.
func goAuth(w http.ResponseWriter, v verdict) {
	switch {
	case v.err != nil:
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"ok": false, "error": "the registry cannot be read"})
	case v.allow:
		writeJSON(w, http.StatusOK, map[string]any{"ok": true, "error": ""})
	default:
		writeJSON(w, http.StatusForbidden, map[string]any{"ok": false, "error": v.why})
	}
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}
