package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/danielgtaylor/huma/v2"

	"github.com/otter-ota/otter/internal/credential"
	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/store"
)

// metaRole is the huma operation metadata key under which every operation
// declares the role it needs; authorize refuses operations without one.
const metaRole = "otter.role"

// securityScheme names the bearer token scheme in the OpenAPI document.
const securityScheme = "bearer"

// MinAdminTokenLen is the shortest fixed admin token BootstrapAdmin accepts.
const MinAdminTokenLen = 16

// authenticate finds the unrevoked token named by an Authorization header.
func (a *API) authenticate(ctx context.Context, header string) (ota.Token, error) {
	scheme, secret, ok := strings.Cut(header, " ")
	if header == "" {
		return ota.Token{}, ota.Errorf(ota.EUNAUTHORIZED, "missing token: send the header Authorization: Bearer <token>")
	}
	secret = strings.TrimSpace(secret)
	if !ok || !strings.EqualFold(scheme, "Bearer") || secret == "" {
		return ota.Token{}, ota.Errorf(ota.EUNAUTHORIZED, "malformed Authorization header: use Authorization: Bearer <token>")
	}
	t, err := a.store.TokenByHash(ctx, credential.Hash(secret))
	if ota.ErrorCode(err) == ota.ENOTFOUND {
		return ota.Token{}, ota.Errorf(ota.EUNAUTHORIZED, "unknown or revoked token")
	}
	return t, err
}

// permit checks that t may act as role need.
func permit(t ota.Token, need ota.Role) error {
	if !t.Role.Allows(need) {
		return ota.Errorf(ota.EFORBIDDEN, "this operation needs the %s role; token %q has the %s role", need, t.Name, t.Role)
	}
	return nil
}

// access authenticates and authorises a request for role need and returns
// the context handlers run with: the token's name is the actor that events
// record.
func (a *API) access(ctx context.Context, header string, need ota.Role) (context.Context, error) {
	t, err := a.authenticate(ctx, header)
	if err != nil {
		return ctx, err
	}
	if err := permit(t, need); err != nil {
		return ctx, err
	}
	return ota.WithActor(ctx, t.Name), nil
}

// authorize is the huma middleware that enforces each operation's role.
func (a *API) authorize(hctx huma.Context, next func(huma.Context)) {
	need, ok := hctx.Operation().Metadata[metaRole].(ota.Role)
	if !ok || !need.Valid() {
		// Fail closed: an operation registered without a role is a bug.
		a.writeHumaProblem(hctx, a.problem(hctx.Context(),
			fmt.Errorf("operation %s declares no role", hctx.Operation().OperationID)))
		return
	}
	ctx, err := a.access(hctx.Context(), hctx.Header("Authorization"), need)
	if err != nil {
		a.writeHumaProblem(hctx, a.problem(hctx.Context(), err))
		return
	}
	next(huma.WithContext(hctx, ctx))
}

func (a *API) writeHumaProblem(hctx huma.Context, p *Problem) {
	if p.Status == http.StatusUnauthorized {
		hctx.SetHeader("WWW-Authenticate", `Bearer realm="otter"`)
	}
	hctx.SetHeader("Content-Type", problemType)
	hctx.SetStatus(p.Status)
	json.NewEncoder(hctx.BodyWriter()).Encode(p)
}

// plainHandler is a route that huma does not serve (streamed bodies); it
// returns an error instead of writing one.
type plainHandler func(w http.ResponseWriter, r *http.Request) error

// plain wraps h with the same authorisation and error mapping as the huma
// operations.
func (a *API) plain(need ota.Role, h plainHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, err := a.access(r.Context(), r.Header.Get("Authorization"), need)
		if err == nil {
			err = h(w, r.WithContext(ctx))
		}
		if err != nil {
			writeProblem(w, a.problem(ctx, err))
		}
	}
}

// BootstrapAdmin creates the first admin token when no token exists: with
// fixed != "" (OTTER_ADMIN_TOKEN) that value, else a new random one. It
// returns the token to print once, or "" when tokens existed already.
func BootstrapAdmin(ctx context.Context, st store.Store, fixed string) (string, error) {
	n, err := st.CountTokens(ctx)
	if err != nil || n > 0 {
		return "", err
	}
	secret, err := adminSecret(fixed)
	if err != nil {
		return "", err
	}
	// Names are unique and revoked tokens keep theirs: when every token
	// was revoked, "admin" is taken and the new one is "admin-2", ...
	for i := 1; i <= 100; i++ {
		t := ota.Token{Name: "admin", Role: ota.RoleAdmin}
		if i > 1 {
			t.Name = fmt.Sprintf("admin-%d", i)
		}
		err = st.CreateToken(ota.WithActor(ctx, "system"), &t, credential.Hash(secret))
		if ota.ErrorCode(err) != ota.ECONFLICT {
			break
		}
		// Another replica may have made the first token meanwhile.
		if n, cerr := st.CountTokens(ctx); cerr != nil || n > 0 {
			return "", cerr
		}
	}
	if err != nil {
		return "", fmt.Errorf("create the first admin token: %w", err)
	}
	return secret, nil
}

func adminSecret(fixed string) (string, error) {
	if fixed == "" {
		return credential.NewToken()
	}
	if len(fixed) < MinAdminTokenLen || strings.ContainsFunc(fixed, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return "", errors.New("OTTER_ADMIN_TOKEN must be at least 16 characters without spaces or control characters")
	}
	return fixed, nil
}
