package console

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"path"
	"strings"

	"github.com/otter-ota/otter/internal/ota"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// base is what every page shows around its content: the title, the
// section of the navigation it belongs to, and who is signed in.
type base struct {
	Title   string
	Section string
	// User is the signed-in operator; nil on the sign-in page.
	User *session
	// Flash is a one-line notice above the content.
	Flash string
}

// CanOperate reports whether the operator may change things: the pages
// show no action the operator may not take.
func (b base) CanOperate() bool { return b.User.can(ota.RoleOperator) }

// pages holds one template set per page: the layout, the shared partials
// and the page's own file, so that every page defines its own "content".
type pages struct {
	sets   map[string]*template.Template
	assets map[string]string // static file -> versioned URL
}

// loadPages parses every page at start, so that a template syntax error
// stops the server instead of showing on first use.
func loadPages() (*pages, error) {
	p := &pages{sets: map[string]*template.Template{}}
	var err error
	if p.assets, err = assetURLs(); err != nil {
		return nil, err
	}
	files, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	shared := template.New("").Funcs(p.funcs())
	if _, err := shared.ParseFS(templateFS, "templates/layout.html", "templates/partials.html"); err != nil {
		return nil, fmt.Errorf("console: parse layout: %w", err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(path.Base(f), ".html")
		if name == "layout" || name == "partials" {
			continue
		}
		set, err := template.Must(shared.Clone()).ParseFS(templateFS, f)
		if err != nil {
			return nil, fmt.Errorf("console: parse %s: %w", f, err)
		}
		p.sets[name] = set
	}
	return p, nil
}

// assetURLs gives each static file a URL with a hash of its content, so
// that browsers may cache it for good and still see every new version.
func assetURLs() (map[string]string, error) {
	out := map[string]string{}
	err := fs.WalkDir(staticFS, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := staticFS.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		name := strings.TrimPrefix(p, "static/")
		out[name] = "/static/" + name + "?v=" + hex.EncodeToString(sum[:6])
		return nil
	})
	return out, err
}

// render writes a whole page: the layout around the page's content.
func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, page string, data any) {
	c.execute(w, r, status, page, "layout", data)
}

// fragment writes one named template of a page, the answer to an htmx
// request that replaces part of the page.
func (c *Console) fragment(w http.ResponseWriter, r *http.Request, page, name string, data any) {
	c.execute(w, r, http.StatusOK, page, name, data)
}

// execute renders into a buffer first, so that a template error becomes a
// clean error page rather than half a page.
func (c *Console) execute(w http.ResponseWriter, r *http.Request, status int, page, name string, data any) {
	set := c.pages.sets[page]
	var buf bytes.Buffer
	var err error
	if set == nil {
		err = fmt.Errorf("no page %q", page)
	} else {
		err = set.ExecuteTemplate(&buf, name, data)
	}
	if err != nil {
		c.log.ErrorContext(r.Context(), "console: render", "page", page, "template", name, "err", err)
		http.Error(w, "internal error: the page could not be rendered", http.StatusInternalServerError)
		return
	}
	pageHeaders(w)
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// pageHeaders forbid framing, inline scripts and any outside host, and keep
// pages (which show device secrets once) out of caches.
func pageHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
		"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
}

// errorPage is the data of the error page.
type errorPage struct {
	base
	Status  int
	Message string
}

// fail shows err: as the error page, or, to an htmx request, as a notice
// in the page's flash area (htmx does not swap error statuses).
func (c *Console) fail(w http.ResponseWriter, r *http.Request, s *session, err error) {
	status := statusOf(err)
	level := slog.LevelInfo
	if status >= 500 {
		level = slog.LevelError
	}
	c.log.Log(r.Context(), level, "console: request failed", "path", r.URL.Path, "status", status, "err", err)
	data := &errorPage{base: base{Title: http.StatusText(status), User: s}, Status: status, Message: messageOf(err)}
	if wantsJSON(r) {
		writeProblem(w, status, codeOf(err), data.Message)
		return
	}
	if isHTMX(r) {
		w.Header().Set("HX-Retarget", "#flash")
		w.Header().Set("HX-Reswap", "innerHTML")
		c.fragment(w, r, "error", "message", data)
		return
	}
	c.render(w, r, status, "error", data)
}

// notFound is the page of any path the console does not serve.
func (c *Console) notFound(w http.ResponseWriter, r *http.Request, s *session) error {
	return notFoundf("there is no page at %s", r.URL.Path)
}

// staticHandler serves the embedded files; their URLs carry a content
// hash, so browsers may keep them.
func staticHandler() (http.Handler, error) {
	sub, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, fmt.Errorf("console: static files: %w", err)
	}
	files := http.FileServerFS(sub)
	return http.StripPrefix("/static/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		files.ServeHTTP(w, r)
	})), nil
}

// notFoundf is the error of a page or thing that does not exist.
func notFoundf(format string, args ...any) error { return ota.Errorf(ota.ENOTFOUND, format, args...) }

// wantsJSON reports whether a script asked (the upload does): it gets a
// problem document like the API's, which it shows next to the field.
func wantsJSON(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "application/json")
}

// writeProblem answers an RFC 9457 problem, as the API does.
func writeProblem(w http.ResponseWriter, status int, code, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{
		"type": "about:blank", "title": http.StatusText(status), "status": status, "code": code, "detail": detail,
	})
}
