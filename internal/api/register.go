package api

import (
	"context"
	"strings"

	"github.com/danielgtaylor/huma/v2"

	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/store"
)

// register adds a huma operation that needs role. It is the only way
// operations are added, so none can miss its role or the error mapping.
func register[I, O any](a *API, role ota.Role, op huma.Operation, h func(context.Context, *I) (*O, error)) {
	op.Metadata = map[string]any{metaRole: role}
	op.Security = []map[string][]string{{securityScheme: {}}}
	op.Description = strings.TrimSpace(op.Description + "\n\nRequires the `" + string(role) + "` role.")
	huma.Register(a.huma, op, func(ctx context.Context, in *I) (*O, error) {
		out, err := h(ctx, in)
		if err != nil {
			return nil, a.problem(ctx, err)
		}
		return out, nil
	})
}

// PageQuery is the paging part of every list request. It is exported only
// because huma reads the parameters of embedded structs that are.
type PageQuery struct {
	Limit int    `query:"limit" minimum:"0" doc:"Items per page; 0 means 100, more than 1000 means 1000."`
	After string `query:"after" doc:"The next cursor of the previous page; empty for the first page."`
}

func (q PageQuery) page() store.Page { return store.Page{Limit: q.Limit, After: q.After} }

// Page is one page of a list.
type Page[T any] struct {
	Items []T    `json:"items" nullable:"false"`
	Next  string `json:"next" doc:"The cursor of the next page (pass it as after); empty on the last page."`
}

type pageOutput[T any] struct {
	Body Page[T]
}

func pageOf[T any](items []T, next string) *pageOutput[T] {
	if items == nil {
		items = []T{}
	}
	return &pageOutput[T]{Body: Page[T]{Items: items, Next: next}}
}

// bodyOutput answers a single object.
type bodyOutput[T any] struct {
	Body T
}

func bodyOf[T any](v T) *bodyOutput[T] { return &bodyOutput[T]{Body: v} }
