package console

import (
	"errors"
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
func (c *Console) view(h handler) http.HandlerFunc { return c.guard(true, h) }

// action serves a form post. What the operator's role allows is the API's
// to say: the console makes every change through it with the operator's
// token.
func (c *Console) action(h handler) http.HandlerFunc { return c.guard(true, h) }

// streamed serves a post whose body h hands on as it comes (a multipart
// file, a firmware file) instead of a form read here.
func (c *Console) streamed(h handler) http.HandlerFunc { return c.guard(false, h) }

// guard authenticates the request, refuses a cross-origin post and reads
// a form's body, before h runs with the operator as the actor of what it
// changes.
func (c *Console) guard(form bool, h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s, err := c.session(r)
		if errors.Is(err, errNoSession) {
			c.toSignin(w, r)
			return
		}
		if err == nil && r.Method != http.MethodGet && r.Method != http.MethodHead {
			err = c.checkPost(w, r, form)
		}
		if err == nil {
			err = h(w, r.WithContext(ota.WithActor(r.Context(), s.Token.Name)), s)
		}
		if err != nil {
			c.fail(w, r, s, err)
		}
	}
}

// errCrossOrigin is a post that a browser says came from another site.
var errCrossOrigin = ota.Errorf(ota.EFORBIDDEN, "this form did not come from this console's own pages: open the console at its own address and try again")

// checkPost refuses a cross-origin post, by the Sec-Fetch-Site or Origin
// header every browser sends, and reads the body of a form. Together with
// the SameSite=Strict session cookie, this is the console's protection
// against cross-site request forgery: no token is needed in forms.
func (c *Console) checkPost(w http.ResponseWriter, r *http.Request, form bool) error {
	if c.origin.Check(r) != nil {
		return errCrossOrigin
	}
	if !form {
		return nil
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		return ota.Errorf(ota.EINVALID, "the form could not be read: %v", err)
	}
	return nil
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
	data := &signinPage{base: base{Title: "Sign in"}, Form: f, Next: localPath(next)}
	c.render(w, r, status, "signin", data)
}

// signin checks the origin and the token, and starts a session.
func (c *Console) signin(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		c.fail(w, r, nil, ota.Errorf(ota.EINVALID, "the form could not be read: %v", err))
		return
	}
	f := newForm(r.PostForm)
	if c.origin.Check(r) != nil {
		f.Fail("", errCrossOrigin)
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
