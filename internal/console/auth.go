package console

import (
	"crypto/hmac"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"mime"
	"net/http"
	"net/url"
	"strings"

	"github.com/otter-ota/otter/internal/credential"
	"github.com/otter-ota/otter/internal/ota"
)

// handler is a console page or action. It returns an error instead of
// writing one; guard turns it into a page (or a message for htmx).
type handler func(w http.ResponseWriter, r *http.Request, s *session) error

// maxFormBytes bounds an url-encoded form: a task's device list of 10,000
// keys fits comfortably.
const maxFormBytes = 4 << 20

// view serves a page that any signed-in operator may see.
func (c *Console) view(h handler) http.HandlerFunc {
	return c.guard(ota.RoleViewer, checkForm, h)
}

// action serves a form post that needs role need; its CSRF token comes in
// the form or the X-CSRF-Token header.
func (c *Console) action(need ota.Role, h handler) http.HandlerFunc {
	return c.guard(need, checkForm, h)
}

// streamed serves a post whose body is streamed (a multipart file): guard
// checks only the X-CSRF-Token header, so h must check the token it reads
// from the body with checkCSRF before it acts when the header is absent.
func (c *Console) streamed(need ota.Role, h handler) http.HandlerFunc {
	return c.guard(need, checkMultipart, h)
}

// scripted serves a post sent by the console's script whose body is not a
// form (a firmware file): the CSRF token must come in the X-CSRF-Token
// header, since nothing reads the body before h forwards it.
func (c *Console) scripted(need ota.Role, h handler) http.HandlerFunc {
	return c.guard(need, checkHeader, h)
}

// csrfMode says where a post's CSRF token is.
type csrfMode int

const (
	checkForm      csrfMode = iota // the header or the url-encoded form
	checkMultipart                 // the header, or a field h reads from the multipart body
	checkHeader                    // the header only
)

// guard authenticates the request, checks the CSRF token and the origin of
// every non-GET request, and checks the role, before h runs with the
// operator as the actor of what it changes.
func (c *Console) guard(need ota.Role, mode csrfMode, h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s, err := c.session(r)
		if errors.Is(err, errNoSession) {
			c.toSignin(w, r)
			return
		}
		if err == nil && r.Method != http.MethodGet && r.Method != http.MethodHead {
			err = c.checkPost(w, r, s, mode)
		}
		if err == nil && !s.can(need) {
			err = ota.Errorf(ota.EFORBIDDEN, "this needs the %s role; you are signed in as %s with the %s role", need, s.Token.Name, s.Token.Role)
		}
		if err == nil {
			err = h(w, r.WithContext(ota.WithActor(r.Context(), s.Token.Name)), s)
		}
		if err != nil {
			c.fail(w, r, s, err)
		}
	}
}

// errCSRF is a post that did not come from one of our own forms.
var errCSRF = ota.Errorf(ota.EFORBIDDEN, "this form has expired or did not come from this console: reload the page and try again")

// checkPost refuses cross-site posts: a foreign Origin or Sec-Fetch-Site,
// or a missing or wrong CSRF token.
func (c *Console) checkPost(w http.ResponseWriter, r *http.Request, s *session, mode csrfMode) error {
	if !sameOrigin(r) {
		return errCSRF
	}
	token := r.Header.Get(csrfHeader)
	switch {
	case mode == checkForm:
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		if err := r.ParseForm(); err != nil {
			return ota.Errorf(ota.EINVALID, "the form could not be read: %v", err)
		}
		if token == "" {
			token = r.PostForm.Get(csrfField)
		}
	case mode == checkMultipart && token == "" && isMultipart(r):
		return nil // the handler reads the token from the body
	}
	return checkCSRF(s, token)
}

// checkCSRF compares a CSRF token with the session's in constant time.
func checkCSRF(s *session, got string) error {
	if got == "" || !hmac.Equal([]byte(got), []byte(s.CSRF)) {
		return errCSRF
	}
	return nil
}

// sameOrigin reports whether the browser says the request comes from this
// site. Browsers send Origin on every POST; requests without it (tools,
// tests) still need the CSRF token.
func sameOrigin(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
	default:
		return false
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	return err == nil && u.Host == r.Host
}

func isMultipart(r *http.Request) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return err == nil && mt == "multipart/form-data"
}

// toSignin sends an operator without a session to the sign-in page, and
// back to where they were going afterwards.
func (c *Console) toSignin(w http.ResponseWriter, r *http.Request) {
	target := "/signin"
	if r.Method == http.MethodGet && r.URL.Path != "/" {
		target += "?next=" + url.QueryEscape(r.URL.RequestURI())
	}
	if wantsJSON(r) {
		writeProblem(w, http.StatusUnauthorized, ota.EUNAUTHORIZED, "Your session has ended: sign in again (in another tab, to keep this form), then retry.")
		return
	}
	if isHTMX(r) {
		// A poll from a page whose session ended: reload as a sign-in.
		w.Header().Set("HX-Redirect", target)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
}

func isHTMX(r *http.Request) bool { return r.Header.Get("HX-Request") == "true" }

// signinPage is the data of the sign-in page.
type signinPage struct {
	base
	Form *form
	Next string
}

func (c *Console) signinForm(w http.ResponseWriter, r *http.Request) {
	if s, err := c.session(r); err == nil && s != nil {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	c.showSignin(w, r, http.StatusOK, newForm(nil), r.URL.Query().Get("next"))
}

func (c *Console) showSignin(w http.ResponseWriter, r *http.Request, status int, f *form, next string) {
	value := ""
	if ck, err := r.Cookie(signinCookie); err == nil && len(ck.Value) == 43 {
		value = ck.Value
	} else {
		b := make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			c.fail(w, r, nil, err)
			return
		}
		value = base64.RawURLEncoding.EncodeToString(b)
		c.setCookie(w, r, signinCookie, value, 3600)
	}
	data := &signinPage{base: base{Title: "Sign in", CSRF: value}, Form: f, Next: localPath(next)}
	c.render(w, r, status, "signin", data)
}

// signin checks the token, double-submit CSRF value and origin, and starts
// a session.
func (c *Console) signin(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		c.fail(w, r, nil, ota.Errorf(ota.EINVALID, "the form could not be read: %v", err))
		return
	}
	f := newForm(r.PostForm)
	ck, err := r.Cookie(signinCookie)
	if err != nil || !sameOrigin(r) || !hmac.Equal([]byte(ck.Value), []byte(f.Get(csrfField))) {
		f.Fail("", errCSRF)
		c.showSignin(w, r, http.StatusForbidden, f, f.Get("next"))
		return
	}
	token := strings.TrimSpace(f.Get("token"))
	tok, err := c.store.TokenByHash(r.Context(), credential.Hash(token))
	switch {
	case token == "":
		f.Errors["token"] = "Enter an API token (otr_...). An admin can create one with: otter token create --role operator --name NAME"
		err = nil
	case ota.ErrorCode(err) == ota.ENOTFOUND:
		f.Errors["token"] = "This token is unknown or revoked."
		err = c.sessionEvent(r, "anonymous", "signin-failed", "unknown or revoked token")
	}
	if err != nil {
		c.fail(w, r, nil, err)
		return
	}
	if !f.OK() {
		c.showSignin(w, r, http.StatusUnauthorized, f, f.Get("next"))
		return
	}
	// The event first: a sign-in that cannot be recorded does not happen.
	if err := c.sessionEvent(r, tok.Name, "signed-in", ""); err != nil {
		c.fail(w, r, nil, err)
		return
	}
	if err := c.startSession(w, r, token); err != nil {
		c.fail(w, r, nil, err)
		return
	}
	http.Redirect(w, r, localPath(f.Get("next")), http.StatusSeeOther)
}

// sessionEvent records a sign-in, failed or not, with the address it came
// from (the client's as the server sees it: a proxy's, behind one).
func (c *Console) sessionEvent(r *http.Request, actor, action, message string) error {
	e := ota.Event{Kind: ota.KindSession, Action: action, Message: message, Data: map[string]string{"remote": r.RemoteAddr}}
	return c.store.RecordEvent(ota.WithActor(r.Context(), actor), e)
}

func (c *Console) startSession(w http.ResponseWriter, r *http.Request, token string) error {
	k, err := c.keys(r.Context())
	if err != nil {
		return err
	}
	value, err := k.seal(token, c.now().Add(c.cfg.SessionTTL))
	if err != nil {
		return err
	}
	c.setCookie(w, r, sessionCookie, value, int(c.cfg.SessionTTL.Seconds()))
	c.setCookie(w, r, signinCookie, "", -1)
	return nil
}

// signout ends the session on the server, so that a copy of the cookie is
// refused from now on by every replica, and deletes it in this browser.
func (c *Console) signout(w http.ResponseWriter, r *http.Request, s *session) error {
	e := ota.Event{Kind: ota.KindSession, Action: "signed-out", Data: map[string]string{"remote": r.RemoteAddr}}
	if err := c.store.EndSession(r.Context(), s.id, s.expires, e); err != nil {
		return err
	}
	c.setCookie(w, r, sessionCookie, "", -1)
	http.Redirect(w, r, "/signin", http.StatusSeeOther)
	return nil
}

// localPath keeps a redirect target on this site: a path, not "//host" or
// "/\host" which browsers read as another host.
func localPath(p string) string {
	if !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") || strings.HasPrefix(p, "/\\") {
		return "/"
	}
	return p
}
