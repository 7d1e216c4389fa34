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
	if p.Protocol == "" {
		p.Protocol = ota.ProtocolOtter
	}
	if !ota.ValidProtocol(p.Protocol) {
		return invalid("product protocol %q is not one of %s or %s", p.Protocol, ota.ProtocolOtter, ota.ProtocolEnOS)
	}
	t, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer t.Rollback()
	_, err = t.ExecContext(ctx,
		`INSERT INTO products (key, name, description, protocol, created_at) VALUES ($1, $2, $3, $4, $5)`,
		p.Key, p.Name, p.Description, p.Protocol, t.now)
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
	return getProduct(ctx, s.db, key)
}

func getProduct(ctx context.Context, q querier, key string) (ota.Product, error) {
	var p ota.Product
	err := q.QueryRowContext(ctx,
		`SELECT key, name, description, protocol, created_at FROM products WHERE key = $1`, key,
	).Scan(&p.Key, &p.Name, &p.Description, &p.Protocol, &p.CreatedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return ota.Product{}, notFound("product %q does not exist", key)
	} else if err != nil {
		return ota.Product{}, fmt.Errorf("get product: %w", err)
	}
	p.CreatedAt = p.CreatedAt.UTC()
	return p, nil
}

// ProductUpdate changes a product; nil fields stay as they are.
type ProductUpdate struct {
	Name        *string
	Description *string
	Protocol    *string
}

// UpdateProduct changes a product's name, description or protocol. A
// product switched away from ota.ProtocolEnOS loses its devices' sealed
// secrets in the same transaction (only their hashes stay); one switched
// to it has none until each device's secret is rotated or the device is
// created again.
func (s *sqlStore) UpdateProduct(ctx context.Context, key string, u ProductUpdate) (ota.Product, error) {
	if u.Protocol != nil && !ota.ValidProtocol(*u.Protocol) {
		return ota.Product{}, invalid("product protocol %q is not one of %s or %s", *u.Protocol, ota.ProtocolOtter, ota.ProtocolEnOS)
	}
	t, err := s.begin(ctx)
	if err != nil {
		return ota.Product{}, err
	}
	defer t.Rollback()
	old, err := getProduct(ctx, t, key)
	if err != nil {
		return ota.Product{}, err
	}
	p, changes := old, map[string]string{}
	set := func(field string, to *string, dst *string) {
		if to != nil && *to != *dst {
			changes[field] = *dst + " -> " + *to
			*dst = *to
		}
	}
	set("name", u.Name, &p.Name)
	set("description", u.Description, &p.Description)
	set("protocol", u.Protocol, &p.Protocol)
	if len(changes) == 0 {
		return old, nil
	}
	if _, err := t.ExecContext(ctx, `UPDATE products SET name = $2, description = $3, protocol = $4 WHERE key = $1`,
		key, p.Name, p.Description, p.Protocol); err != nil {
		return ota.Product{}, fmt.Errorf("update product: %w", err)
	}
	if p.Protocol != ota.ProtocolEnOS {
		if _, err := t.ExecContext(ctx, `UPDATE devices SET secret_sealed = NULL WHERE product = $1 AND secret_sealed IS NOT NULL`, key); err != nil {
			return ota.Product{}, fmt.Errorf("update product: forget sealed secrets: %w", err)
		}
	}
	if err := t.addEvent(ctx, ota.Event{Kind: ota.KindProduct, Action: "updated", Product: key, Data: changes}); err != nil {
		return ota.Product{}, err
	}
	if err := t.Commit(); err != nil {
		return ota.Product{}, err
	}
	return p, nil
}

// productProtocol reads a product's protocol and locks its row until the
// transaction ends (on PostgreSQL; SQLite transactions are serial), so that
// a protocol change cannot slip between the read and what depends on it.
func productProtocol(ctx context.Context, q querier, key string) (string, error) {
	var protocol string
	err := q.QueryRowContext(ctx, `UPDATE products SET protocol = protocol WHERE key = $1 RETURNING protocol`, key).Scan(&protocol)
	if errors.Is(err, sql.ErrNoRows) {
		return "", notFound("product %q does not exist", key)
	} else if err != nil {
		return "", fmt.Errorf("read product protocol: %w", err)
	}
	return protocol, nil
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
	rows, err := s.db.QueryContext(ctx, `SELECT key, name, description, protocol, created_at FROM products
		WHERE key > $1 ORDER BY key LIMIT $2`, after, limit+1)
	if err != nil {
		return nil, "", fmt.Errorf("list products: %w", err)
	}
	defer rows.Close()
	products := []ota.Product{}
	for rows.Next() {
		var p ota.Product
		if err := rows.Scan(&p.Key, &p.Name, &p.Description, &p.Protocol, &p.CreatedAt); err != nil {
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
