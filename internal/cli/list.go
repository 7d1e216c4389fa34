package cli

import (
	"iter"

	"github.com/otter-ota/otter/client"
)

// maxPageSize is the largest page the server returns; asking for more is
// harmless (it caps), but asking for exactly what --limit needs saves
// fetching items that would not be printed.
const maxPageSize = 1000

// pageOptions returns the page size to ask for when at most limit items
// are wanted (0: all, with the server's default page size).
func pageOptions(limit int) client.ListOptions {
	if limit <= 0 {
		return client.ListOptions{}
	}
	return client.ListOptions{Limit: min(limit, maxPageSize)}
}

// collect gathers the items of seq, following its pages, until the list
// ends or limit items are gathered (limit 0: no limit). The result is never
// nil, so that an empty list prints as [] in JSON.
func collect[T any](seq iter.Seq2[T, error], limit int) ([]T, error) {
	items := []T{}
	if limit < 0 {
		return items, nil
	}
	for item, err := range seq {
		if err != nil {
			return nil, err
		}
		items = append(items, item)
		if limit > 0 && len(items) >= limit {
			break
		}
	}
	return items, nil
}
