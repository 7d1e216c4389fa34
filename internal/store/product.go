package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/sdk/wire"
)

// CreateProduct stores p and assigns p.CreatedAt.
func (s *sqlStore) CreateProduct(ctx context.Context, p *ota.Product) error {
	if err := checkKey("product", p.Key); err != nil {
		return err
	}
	t, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer t.Rollback()
	_, err = t.ExecContext(ctx,
		`INSERT INTO products (key, name, description, created_at) VALUES ($1, $2, $3, $4)`,
		p.Key, p.Name, p.Description, t.now)
	if isUniqueViolation(err) {
		return conflict("product %q already exists", p.Key)
	} else if err != nil {
		return fmt.Errorf("create product: %w", err)
	}
	if err := t.addEvent(ctx, ota.Event{Kind: ota.KindProduct, Action: "created", Product: p.Key}); err != nil {
		return err
	}
	if err := t.Commit(); err != nil {
		return err
	}
	p.CreatedAt = t.now
	return nil
}

// GetProduct returns the product with key.
func (s *sqlStore) GetProduct(ctx context.Context, key string) (ota.Product, error) {
	var p ota.Product
	err := s.db.QueryRowContext(ctx,
		`SELECT key, name, description, created_at FROM products WHERE key = $1`, key,
	).Scan(&p.Key, &p.Name, &p.Description, &p.CreatedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return ota.Product{}, notFound("product %q does not exist", key)
	} else if err != nil {
		return ota.Product{}, fmt.Errorf("get product: %w", err)
	}
	p.CreatedAt = p.CreatedAt.UTC()
	return p, nil
}

// ListProducts pages through the products in key order.
func (s *sqlStore) ListProducts(ctx context.Context, page Page) ([]ota.Product, string, error) {
	limit, err := pageLimit(page)
	if err != nil {
		return nil, "", err
	}
	after, err := decodeCursor(page.After)
	if err != nil {
		return nil, "", err
	}
	rows, err := s.db.QueryContext(ctx, `SELECT key, name, description, created_at FROM products
		WHERE key > $1 ORDER BY key LIMIT $2`, after, limit+1)
	if err != nil {
		return nil, "", fmt.Errorf("list products: %w", err)
	}
	defer rows.Close()
	products := []ota.Product{}
	for rows.Next() {
		var p ota.Product
		if err := rows.Scan(&p.Key, &p.Name, &p.Description, &p.CreatedAt); err != nil {
			return nil, "", fmt.Errorf("list products: %w", err)
		}
		p.CreatedAt = p.CreatedAt.UTC()
		products = append(products, p)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("list products: %w", err)
	}
	products, next := cutPage(products, limit, func(p ota.Product) string { return p.Key })
	return products, next, nil
}

// DeleteProduct deletes an empty product.
func (s *sqlStore) DeleteProduct(ctx context.Context, key string) error {
	t, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer t.Rollback()
	if err := productInUse(ctx, t, key); err != nil {
		return err
	}
	res, err := t.ExecContext(ctx, `DELETE FROM products WHERE key = $1`, key)
	if isForeignKeyViolation(err) {
		return conflict("product %q is still in use: delete its devices, firmware and tasks first", key)
	} else if err != nil {
		return fmt.Errorf("delete product: %w", err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return notFound("product %q does not exist", key)
	}
	if err := t.addEvent(ctx, ota.Event{Kind: ota.KindProduct, Action: "deleted", Product: key}); err != nil {
		return err
	}
	return t.Commit()
}

// productInUse answers ECONFLICT, naming what is left, while a product has
// devices or firmware.
func productInUse(ctx context.Context, q querier, key string) error {
	var devices, firmware int64
	err := q.QueryRowContext(ctx, `SELECT
		(SELECT COUNT(*) FROM devices WHERE product = $1),
		(SELECT COUNT(*) FROM firmware WHERE product = $1)`, key).Scan(&devices, &firmware)
	if err != nil {
		return fmt.Errorf("delete product: %w", err)
	}
	var left []string
	if devices > 0 {
		left = append(left, plural(devices, "device", "devices"))
	}
	if firmware > 0 {
		left = append(left, plural(firmware, "firmware", "firmware"))
	}
	if len(left) > 0 {
		return conflict("product %q has %s: delete them first", key, strings.Join(left, " and "))
	}
	return nil
}

// plural formats a count with the word that fits it.
func plural(n int64, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// checkKey refuses a product or device key that breaks the protocol's key
// rule (wire.KeyRule): the API checks it first, the store makes sure.
func checkKey(what, key string) error {
	if err := wire.CheckKey(what+" key", key); err != nil {
		if we := (*wire.Error)(nil); errors.As(err, &we) {
			return invalid("%s", we.Message)
		}
		return invalid("%v", err)
	}
	return nil
}
