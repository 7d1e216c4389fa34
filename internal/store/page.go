package store

import (
	"encoding/base64"
	"strconv"

	"github.com/otter-ota/otter/sdk/wire"
)

// pageLimit returns how many items page asks for, within the store's limits.
func pageLimit(page Page) (int, error) {
	switch {
	case page.Limit < 0:
		return 0, invalid("invalid page limit %d: must not be negative", page.Limit)
	case page.Limit == 0:
		return DefaultPageSize, nil
	}
	return min(page.Limit, MaxPageSize), nil
}

// encodeCursor makes the opaque cursor that follows the item with key k.
func encodeCursor(k string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(k))
}

// decodeCursor reads a cursor made by encodeCursor; "" is the first page.
func decodeCursor(c string) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || (c != "" && len(b) == 0) {
		return "", badCursor(c)
	}
	return string(b), nil
}

// decodeIDCursor reads a cursor that follows the item with an id; "" is 0.
func decodeIDCursor(c string) (int64, error) {
	k, err := decodeCursor(c)
	if err != nil || k == "" {
		return 0, err
	}
	id, err := strconv.ParseInt(k, 10, 64)
	if err != nil || id <= 0 {
		return 0, badCursor(c)
	}
	return id, nil
}

func badCursor(c string) error {
	return invalid("invalid page cursor %q: pass the cursor returned with the previous page unchanged", wire.Clip(c, 40))
}

// cutPage trims items, read with one more than limit, to limit and returns
// the cursor of the next page: "" when there is none.
func cutPage[T any](items []T, limit int, key func(T) string) ([]T, string) {
	if len(items) <= limit {
		return items, ""
	}
	items = items[:limit]
	return items, encodeCursor(key(items[limit-1]))
}

// idKey formats an id as a cursor key.
func idKey(id int64) string { return strconv.FormatInt(id, 10) }

// IDCursor is the cursor of a page that follows the item with id id, for
// lists in id order (a benchmark reads pages from the middle of a list).
func IDCursor(id int64) string { return encodeCursor(idKey(id)) }

// indexedEq returns the condition col = value (value a placeholder or a
// literal) for the last column before id of the index a list pages
// through in id order, and the ORDER BY that index gives.
//
// SQLite plans by rule and takes that index for col = value. PostgreSQL
// estimates: it takes col = value to make col a constant, so that the
// primary key gives the same order, and where it expects the matching
// rows to be common it scans the primary key from the cursor on, skipping
// the rows of other values. They are not spread evenly (a task's jobs and
// events, a product's devices lie together), so the last page of a list,
// or any page when the rows lie before the cursor, read up to the whole
// table: 1 to 2 seconds at 1,000,000 rows. As a range, col >= value AND
// col <= value, the column is no constant, only the index gives the order,
// and the equality keys before it end the index scan at the last match.
func indexedEq(d dialect, col, value, id string) (cond, orderBy string) {
	if d == postgresDialect {
		return col + " >= " + value + " AND " + col + " <= " + value, col + ", " + id
	}
	return col + " = " + value, id
}
