package client

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestErrorMessage(t *testing.T) {
	many := make([]string, 12)
	for i := range many {
		many[i] = string(rune('a' + i))
	}
	tests := []struct {
		name string
		err  Error
		want string
	}{
		{"detail and code", Error{Status: 409, Code: "conflict", Title: "Conflict", Detail: "firmware demo/default 1.1.0 exists already (id 3)"},
			"firmware demo/default 1.1.0 exists already (id 3) (409 conflict)"},
		{"title only", Error{Status: 404, Code: "not_found", Title: "Not Found"}, "Not Found (404 not_found)"},
		{"nothing but status", Error{Status: 502}, "Bad Gateway (502 bad gateway)"},
		{"details", Error{Status: 409, Code: "conflict", Detail: "devices exist already", Details: []string{"d1", "d2"}},
			"devices exist already: d1, d2 (409 conflict)"},
		{"many details", Error{Status: 409, Code: "conflict", Detail: "devices exist already", Details: many},
			"devices exist already: a, b, c, d, e, f, g, h, i, j and 2 more (409 conflict)"},
		{"details the message names already", Error{Status: 409, Code: "conflict", Detail: `device "d1" already exists`, Details: []string{"d1"}},
			`device "d1" already exists (409 conflict)`},
		{"listed details", Error{Status: 400, Code: "invalid", Detail: "2 of the listed devices do not exist in this product (or lack the tags): nosuch1, nosuch2",
			Details: []string{"nosuch1", "nosuch2"}},
			"2 of the listed devices do not exist in this product (or lack the tags): nosuch1, nosuch2 (400 invalid)"},
		{"field errors", Error{Status: 422, Code: "invalid", Detail: "validation failed", Errors: []FieldError{
			{Message: "expected string to match pattern", Location: "body.key"}, {Message: "required"}}},
			"validation failed: body.key: expected string to match pattern; required (422 invalid)"},
		{"field errors the message says already", Error{Status: 400, Code: "invalid", Detail: "rate must be positive; retries must be positive",
			Errors: []FieldError{{Message: "rate must be positive", Location: "body.policy.rate"}, {Message: "retries must be positive", Location: "body.policy.retries"}}},
			"rate must be positive; retries must be positive (400 invalid)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("Error() = %q\nwant      %q", got, tt.want)
			}
		})
	}
}

func TestReadError(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		want   *Error
	}{
		{"problem", 409, `{"type":"about:blank","title":"Conflict","status":409,"detail":"in use","code":"conflict","details":["d1"]}`,
			&Error{Status: 409, Code: "conflict", Title: "Conflict", Detail: "in use", Details: []string{"d1"}}},
		{"validation", 422, `{"title":"Unprocessable Entity","status":422,"detail":"validation failed","code":"invalid","errors":[{"message":"bad","location":"query.limit","value":-1}]}`,
			&Error{Status: 422, Code: "invalid", Title: "Unprocessable Entity", Detail: "validation failed",
				Errors: []FieldError{{Message: "bad", Location: "query.limit", Value: float64(-1)}}}},
		{"status from response wins", 500, `{"title":"x","status":200}`, &Error{Status: 500, Title: "x"}},
		{"plain text", 502, "upstream down\nmore", &Error{Status: 502, Detail: "upstream down"}},
		{"html page", 502, "<html><body>Bad gateway</body></html>", &Error{Status: 502}},
		{"empty", 503, "", &Error{Status: 503}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := &http.Response{StatusCode: tt.status, Body: io.NopCloser(strings.NewReader(tt.body))}
			if diff := cmp.Diff(tt.want, readError(resp)); diff != "" {
				t.Errorf("readError (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNewTrimsBaseURL(t *testing.T) {
	for _, in := range []string{"http://h:1", "http://h:1/", "http://h:1/api/v1", "http://h:1/api/v1/"} {
		if got := New(in, "").BaseURL(); got != "http://h:1" {
			t.Errorf("New(%q).BaseURL() = %q, want http://h:1", in, got)
		}
	}
}

func TestPathEscapesSegments(t *testing.T) {
	if got, want := path("products", "a/b", "devices", "x y:z"), "/products/a%2Fb/devices/x%20y:z"; got != want {
		t.Errorf("path = %q, want %q", got, want)
	}
}
