package client

import (
	"context"
	"fmt"
	"iter"
	"net/url"
	"strconv"
)

// ListOptions selects one page of a list.
type ListOptions struct {
	// After is the cursor returned as Next with the previous page; "" for
	// the first page.
	After string
	// Limit is the page size; 0 lets the server choose. The server caps it.
	Limit int
}

func (o ListOptions) encode(q url.Values) {
	if o.After != "" {
		q.Set("after", o.After)
	}
	if o.Limit > 0 {
		q.Set("limit", strconv.Itoa(o.Limit))
	}
}

// Page is one page of a list.
type Page[T any] struct {
	Items []T `json:"items"`
	// Next is the cursor of the following page; "" on the last page.
	Next string `json:"next"`
}

// fetchFunc gets one page of a list.
type fetchFunc[T any] func(ctx context.Context, opts ListOptions) (*Page[T], error)

// all iterates over every item of a list, page after page, starting at
// opts. It yields a non-nil error at most once, as its last value.
func all[T any](ctx context.Context, opts ListOptions, fetch fetchFunc[T]) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		for {
			page, err := fetch(ctx, opts)
			if err == nil && page.Next != "" && page.Next == opts.After {
				err = fmt.Errorf("the server returned the same page cursor %q twice", page.Next)
			}
			if err != nil {
				var zero T
				yield(zero, err)
				return
			}
			for _, item := range page.Items {
				if !yield(item, nil) {
					return
				}
			}
			if page.Next == "" {
				return
			}
			opts.After = page.Next
		}
	}
}

// getPage fetches one page of the list at path.
func getPage[T any](ctx context.Context, c *Client, path string, q url.Values, opts ListOptions) (*Page[T], error) {
	if q == nil {
		q = url.Values{}
	}
	opts.encode(q)
	var p Page[T]
	if err := c.call(ctx, request{method: "GET", path: path, query: q}, &p); err != nil {
		return nil, err
	}
	return &p, nil
}
