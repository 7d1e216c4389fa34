package api

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"reflect"

	"github.com/danielgtaylor/huma/v2"

	"github.com/otter-ota/otter/internal/ota"
)

// Problem is an RFC 9457 problem details body with otter's error code.
type Problem struct {
	Type   string `json:"type" doc:"Always about:blank: the code field names the problem."`
	Title  string `json:"title" doc:"The HTTP status text."`
	Status int    `json:"status" doc:"The HTTP status code."`
	Detail string `json:"detail,omitempty" doc:"What went wrong, for the human reading it."`
	Code   string `json:"code" enum:"invalid,not_found,conflict,unauthorized,forbidden,too_large,mismatch,unavailable,internal" doc:"The machine-readable error code."`
	// Errors lists field errors: found by request validation, or the Fields
	// of a domain error.
	Errors []*huma.ErrorDetail `json:"errors,omitempty" doc:"Field errors: each input that breaks a rule, at its location in the request (body.policy.rate)."`
	// Details names the offending items, e.g. conflicting device keys.
	Details []string `json:"details,omitempty" doc:"The offending items, e.g. conflicting device keys (at most 1000)."`
}

// Error implements error.
func (p *Problem) Error() string { return p.Detail }

// GetStatus implements huma.StatusError.
func (p *Problem) GetStatus() int { return p.Status }

// ContentType implements huma.ContentTypeFilter: problems are
// application/problem+json.
func (p *Problem) ContentType(string) string { return problemType }

const problemType = "application/problem+json"

// maxDetails bounds the items a problem lists: a task that would
// double-target a million devices must not answer with all their keys (the
// detail message gives the count).
const maxDetails = 1000

// statuses pairs each ota error code with its HTTP status: the one place
// both directions are read from (the console uses HTTPStatus too).
var statuses = []struct {
	code   string
	status int
}{
	{ota.EINVALID, http.StatusBadRequest},
	{ota.ENOTFOUND, http.StatusNotFound},
	{ota.ECONFLICT, http.StatusConflict},
	{ota.EUNAUTHORIZED, http.StatusUnauthorized},
	{ota.EFORBIDDEN, http.StatusForbidden},
	{ota.ETOOLARGE, http.StatusRequestEntityTooLarge},
	{ota.EMISMATCH, http.StatusUnprocessableEntity},
	{ota.EUNAVAILABLE, http.StatusServiceUnavailable},
}

// HTTPStatus returns the HTTP status of an ota error code; unknown codes
// are internal errors.
func HTTPStatus(code string) int {
	for _, s := range statuses {
		if s.code == code {
			return s.status
		}
	}
	return http.StatusInternalServerError
}

// codeOf names the code of a problem that did not start as an ota.Error
// (request validation, unknown routes). 422 (huma's schema errors) stays
// invalid rather than mismatch: it is the request's shape that is wrong.
func codeOf(status int) string {
	for _, s := range statuses {
		if s.status == status && s.code != ota.EMISMATCH {
			return s.code
		}
	}
	if status >= 500 {
		return ota.EINTERNAL
	}
	return ota.EINVALID
}

// newProblem returns a problem; an empty code is derived from status.
func newProblem(status int, code, detail string) *Problem {
	if code == "" {
		code = codeOf(status)
	}
	return &Problem{Type: "about:blank", Title: http.StatusText(status), Status: status, Detail: detail, Code: code}
}

// problem turns any error a handler returns into the problem the client
// sees. Internal errors are logged here and shown only as "internal error",
// so no SQL or file path reaches a client.
func (a *API) problem(ctx context.Context, err error) *Problem {
	var p *Problem
	if errors.As(err, &p) {
		return p
	}
	var se huma.StatusError
	if errors.As(err, &se) {
		return fromHuma(se)
	}
	var oe *ota.Error
	if errors.As(err, &oe) && HTTPStatus(oe.Code) != http.StatusInternalServerError {
		p := newProblem(HTTPStatus(oe.Code), oe.Code, oe.Message)
		p.Details = oe.Details[:min(len(oe.Details), maxDetails)]
		for _, f := range oe.Fields {
			p.Errors = append(p.Errors, &huma.ErrorDetail{Location: "body." + f.Field, Message: f.Message})
		}
		return p
	}
	level := slog.LevelError
	if ctx.Err() != nil {
		level = slog.LevelInfo // the client went away; nothing is broken
	}
	a.log.Log(ctx, level, "api: request failed", "err", err, "actor", ota.ActorFrom(ctx))
	return newProblem(http.StatusInternalServerError, ota.EINTERNAL, "internal error")
}

// fromHuma converts the errors huma makes itself (request validation,
// unreadable bodies) into our problem shape.
func fromHuma(se huma.StatusError) *Problem {
	p := newProblem(se.GetStatus(), "", se.Error())
	if em, ok := se.(*huma.ErrorModel); ok {
		p.Errors = em.Errors
	}
	return p
}

// problemTransformer rewrites huma's own error bodies as Problems just
// before they are written, so they carry a code too.
func problemTransformer(_ huma.Context, _ string, v any) (any, error) {
	if em, ok := v.(*huma.ErrorModel); ok {
		return fromHuma(em), nil
	}
	return v, nil
}

// writeProblem writes p on a plain (non-huma) route.
func writeProblem(w http.ResponseWriter, p *Problem) {
	if p.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="otter"`)
	}
	w.Header().Set("Content-Type", problemType)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(p.Status)
	json.NewEncoder(w).Encode(p)
}

// documentProblems points every problem response of the document at the
// Problem schema, in place of huma's ErrorModel that lacks our code field.
func documentProblems(doc *huma.OpenAPI) {
	reg := doc.Components.Schemas
	schema := reg.Schema(reflect.TypeFor[Problem](), true, "Problem")
	for _, item := range doc.Paths {
		for _, op := range []*huma.Operation{item.Get, item.Put, item.Post, item.Patch, item.Delete} {
			if op == nil {
				continue
			}
			for _, resp := range op.Responses {
				if mt := resp.Content[problemType]; mt != nil {
					mt.Schema = schema
				}
			}
		}
	}
	delete(reg.Map(), "ErrorModel")
}

// onField names the body field an invalid or conflicting input is about,
// so that a client can show the error next to that field (the problem's
// errors[].location); other errors, and errors that name their fields
// already, pass unchanged.
func onField(field string, err error) error {
	var oe *ota.Error
	if !errors.As(err, &oe) || len(oe.Fields) > 0 || oe.Code != ota.EINVALID && oe.Code != ota.ECONFLICT {
		return err
	}
	e := *oe
	e.Fields = []ota.FieldError{{Field: field, Message: oe.Message}}
	return &e
}
