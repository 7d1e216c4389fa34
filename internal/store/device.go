package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/otter-ota/otter/internal/ota"
)

// deviceColumns are the devices columns scanDevice reads, in order.
const deviceColumns = "d.id, d.product, d.key, d.online, d.last_seen, d.created_at"

// deviceListColumns are deviceColumns packed into one column
// (packColumns), as the list reads them on SQLite.
var deviceListColumns = packColumns(deviceColumns, "d.product", "d.key")

// scanDevice reads one row of deviceColumns; tags and versions stay empty.
func scanDevice(row interface{ Scan(...any) error }) (ota.Device, error) {
	return newDeviceRow().scan(row)
}

// deviceRow reads rows of deviceColumns into values reused from row to
// row (see rowValues).
type deviceRow struct{ *rowValues }

func newDeviceRow() deviceRow { return deviceRow{newRowValues(6)} }

func (r deviceRow) scan(row interface{ Scan(...any) error }) (ota.Device, error) {
	if err := r.rowValues.scan(row); err != nil {
		return ota.Device{}, err
	}
	d := ota.Device{ID: r.int64(0), Product: r.str(1), Key: r.str(2), Online: r.bool(3)}
	lastSeen, created := r.time(4), r.time(5)
	if r.err != nil {
		return ota.Device{}, fmt.Errorf("device %d: %w", d.ID, r.err)
	}
	if !created.Valid {
		return ota.Device{}, fmt.Errorf("device %d has no creation time", d.ID)
	}
	d.LastSeen = lastSeen.ptr()
	d.CreatedAt = created.Time.UTC()
	d.Tags, d.Versions = map[string]string{}, map[string]string{}
	return d, nil
}

func deviceNotFound(product, key string) error {
	return notFound("device %q does not exist in product %q", key, product)
}

// GetDevice returns a device with its tags and versions.
func (s *sqlStore) GetDevice(ctx context.Context, product, key string) (ota.Device, error) {
	return getDevice(ctx, s.db, product, key)
}

func getDevice(ctx context.Context, q querier, product, key string) (ota.Device, error) {
	d, err := scanDevice(q.QueryRowContext(ctx,
		`SELECT `+deviceColumns+` FROM devices d WHERE d.product = $1 AND d.key = $2`, product, key))
	if errors.Is(err, sql.ErrNoRows) {
		return ota.Device{}, deviceNotFound(product, key)
	} else if err != nil {
		return ota.Device{}, fmt.Errorf("get device: %w", err)
	}
	devs := []ota.Device{d}
	if err := loadDeviceDetails(ctx, q, devs, false); err != nil {
		return ota.Device{}, err
	}
	return devs[0], nil
}

// loadDeviceDetails fills the tags and versions of devs, in one statement
// (a UNION ALL of the two lookups) per chunk of ids on SQLite, one for the
// whole page on PostgreSQL. packed (SQLite only) packs each row into one
// column (see packColumns).
func loadDeviceDetails(ctx context.Context, q querier, devs []ota.Device, packed bool) error {
	if len(devs) == 0 {
		return nil
	}
	byID := make(map[int64]*ota.Device, len(devs))
	ids := make([]int64, len(devs))
	for i := range devs {
		byID[devs[i].ID], ids[i] = &devs[i], devs[i].ID
	}
	// Each id is a parameter twice (tags, versions). SQLite reads packed
	// rows in chunks of a few sizes, whose statements stay prepared (see
	// chunks). PostgreSQL caches a statement per text on each connection
	// itself and answers the page in one statement: a 100-device page in
	// chunks of 64, 32 and 4 cost six round trips (tags and versions
	// apart), each a write, a wake-up of the backend and a read, which
	// cost the server and the database more than the rows.
	parts := chunks(ids, 2)
	if !packed && 2*len(ids) <= maxParams {
		parts = [][]int64{ids}
	}
	for _, chunk := range parts {
		if err := loadDetails(ctx, q, chunk, packed, byID); err != nil {
			return fmt.Errorf("load device tags and versions: %w", err)
		}
	}
	return nil
}

// detailColumns are the columns loadDetails reads: which (1 a tag, 2 a
// version), the device's id, the tag's name or the module, the value or
// the version.
const detailColumns = "k, device_id, name, value"

var packedDetails = packColumns(detailColumns, "name", "value")

// loadDetails reads the tags and versions of the devices ids into byID,
// packed (SQLite) or not.
func loadDetails(ctx context.Context, q querier, ids []int64, packed bool, byID map[int64]*ota.Device) error {
	var a args
	sel, r := detailColumns, newRowValues(4)
	if packed {
		sel, r = packedDetails.sql, packedDetails.row()
	}
	rows, err := q.QueryContext(ctx, detailsQuery(&a, sel, ids), a...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := r.scan(rows); err != nil {
			return err
		}
		kind, id, k, v := r.int64(0), r.int64(1), r.str(2), r.str(3)
		if r.err != nil {
			return r.err
		}
		d := byID[id]
		switch {
		case d == nil: // between the page's devices (pairsCondition)
		case kind == 1:
			d.Tags[k] = v
		default:
			d.Versions[k] = v
		}
	}
	return rows.Err()
}

// detailsQuery selects sel (detailColumns or packedDetails) of the tags
// and versions of the devices ids.
func detailsQuery(a *args, sel string, ids []int64) string {
	return "SELECT " + sel + " FROM (SELECT 1 AS k, device_id, name, value FROM device_tags WHERE " + pairsCondition(a, ids) +
		" UNION ALL SELECT 2, device_id, module, version FROM device_versions WHERE " + pairsCondition(a, ids) + ") AS x"
}

// pairsCondition selects the rows of the devices ids in a table keyed by
// (device_id, ...): a range of ids, or the list of them.
func pairsCondition(a *args, ids []int64) string {
	if lo, hi := slices.Min(ids), slices.Max(ids); hi-lo < 2*int64(len(ids)) {
		// A page of a list without a sparse filter: one range of the
		// primary key reads about the same rows as a lookup per device, at
		// a fraction of the cost; rows of devices between the page's are
		// skipped by the caller.
		return "device_id BETWEEN " + a.add(lo) + " AND " + a.add(hi)
	}
	return "device_id IN (" + inPadded(a, ids) + ")"
}

// packPairs are the columns loadPairs reads, packed, by table.
var packPairs = map[string]packedColumns{
	"device_tags": packColumns("device_id, name, value", "name", "value"),
}

// loadPairs reads cols (device id, name, value) of table for ids, packed
// if asked, and hands each row to set with its device.
func loadPairs(ctx context.Context, q querier, table, cols string, packed bool, ids []int64,
	set func(d *ota.Device, k, v string), byID map[int64]*ota.Device) error {
	var a args
	cond := pairsCondition(&a, ids)
	sel, r := cols, newRowValues(3)
	if packed {
		p := packPairs[table]
		sel, r = p.sql, p.row()
	}
	rows, err := q.QueryContext(ctx, "SELECT "+sel+" FROM "+table+" WHERE "+cond, a...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := r.scan(rows); err != nil {
			return err
		}
		id, k, v := r.int64(0), r.str(1), r.str(2)
		if r.err != nil {
			return r.err
		}
		if d := byID[id]; d != nil {
			set(d, k, v)
		}
	}
	return rows.Err()
}

// deviceID returns the id of a device, ENOTFOUND if there is none.
func deviceID(ctx context.Context, q querier, product, key string) (int64, error) {
	var id int64
	err := q.QueryRowContext(ctx, `SELECT id FROM devices WHERE product = $1 AND key = $2`, product, key).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, deviceNotFound(product, key)
	} else if err != nil {
		return 0, fmt.Errorf("find device: %w", err)
	}
	return id, nil
}

// SetDeviceTags replaces all of a device's tags.
func (s *sqlStore) SetDeviceTags(ctx context.Context, product, key string, tags map[string]string) (ota.Device, error) {
	if err := checkTags(key, tags); err != nil {
		return ota.Device{}, err
	}
	t, err := s.begin(ctx)
	if err != nil {
		return ota.Device{}, err
	}
	defer t.Rollback()
	id, err := deviceID(ctx, t, product, key)
	if err != nil {
		return ota.Device{}, err
	}
	if _, err := t.ExecContext(ctx, `DELETE FROM device_tags WHERE device_id = $1`, id); err != nil {
		return ota.Device{}, fmt.Errorf("set device tags: %w", err)
	}
	if err := insertPairs(ctx, t, "device_tags (device_id, name, value)", pairsOf(id, tags)); err != nil {
		return ota.Device{}, fmt.Errorf("set device tags: %w", err)
	}
	e := ota.Event{Kind: ota.KindDevice, Action: "tags_set", Product: product, Device: key, Data: maps.Clone(tags)}
	if err := t.addEvent(ctx, e); err != nil {
		return ota.Device{}, err
	}
	d, err := getDevice(ctx, t, product, key)
	if err != nil {
		return ota.Device{}, err
	}
	if err := t.Commit(); err != nil {
		return ota.Device{}, err
	}
	return d, nil
}

// SetDeviceSecret replaces the hash of a device's secret, and its sealed
// form when the product keeps one (read under the product's row lock, so
// that a concurrent switch of protocol cannot leave one behind).
func (s *sqlStore) SetDeviceSecret(ctx context.Context, product, key string, secretHash, sealed []byte) error {
	if len(secretHash) == 0 {
		return invalid("device %q needs a secret hash", key)
	}
	return s.changeDeviceIn(ctx, product, key, "secret_rotated", func(t *tx) (sql.Result, error) {
		protocol, err := productProtocol(ctx, t, product)
		if ota.ErrorCode(err) == ota.ENOTFOUND {
			return nil, deviceNotFound(product, key)
		} else if err != nil {
			return nil, err
		}
		if protocol != ota.ProtocolEnOS {
			sealed = nil
		}
		return t.ExecContext(ctx, `UPDATE devices SET secret_hash = $3, secret_sealed = $4 WHERE product = $1 AND key = $2`,
			product, key, secretHash, sealed)
	})
}

// DeleteDevice deletes a device with its tags and versions. Its jobs and
// events stay, readable under its key.
func (s *sqlStore) DeleteDevice(ctx context.Context, product, key string) error {
	return s.changeDeviceIn(ctx, product, key, "deleted", func(t *tx) (sql.Result, error) {
		if err := rememberDevices(ctx, t, "product = $1 AND key = $2", product, key); err != nil {
			return nil, err
		}
		return t.ExecContext(ctx, `DELETE FROM devices WHERE product = $1 AND key = $2`, product, key)
	})
}

// rememberDevices records, before they are deleted, the ids and keys of the
// devices that match cond, so that their jobs' events are still listed
// under their keys (see deviceEventQuery).
func rememberDevices(ctx context.Context, t *tx, cond string, a ...any) error {
	_, err := t.ExecContext(ctx, `INSERT INTO former_devices (id, product, key)
		SELECT id, product, key FROM devices WHERE `+cond, a...)
	if err != nil {
		return fmt.Errorf("remember deleted device: %w", err)
	}
	return nil
}

// changeDeviceIn runs change in a transaction and records the device event
// action when it changed a row.
func (s *sqlStore) changeDeviceIn(ctx context.Context, product, key, action string, change func(t *tx) (sql.Result, error)) error {
	t, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer t.Rollback()
	res, err := change(t)
	if err != nil && ota.ErrorCode(err) != ota.EINTERNAL {
		return err // the caller's mistake, already explained
	} else if err != nil {
		return fmt.Errorf("device %s: %w", action, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("device %s: %w", action, err)
	} else if n == 0 {
		return deviceNotFound(product, key)
	}
	if err := t.addEvent(ctx, ota.Event{Kind: ota.KindDevice, Action: action, Product: product, Device: key}); err != nil {
		return err
	}
	return t.Commit()
}

// Credentials returns what a device's login is checked against.
func (s *sqlStore) Credentials(ctx context.Context, product, key string) (ota.DeviceCredentials, error) {
	var c ota.DeviceCredentials
	err := s.db.QueryRowContext(ctx, `SELECT d.id, d.secret_hash, p.protocol,
			CASE WHEN p.protocol = '`+ota.ProtocolEnOS+`' THEN d.secret_sealed END
		FROM devices d JOIN products p ON p.key = d.product WHERE d.product = $1 AND d.key = $2`,
		product, key).Scan(&c.DeviceID, &c.SecretHash, &c.Protocol, &c.SealedSecret)
	if errors.Is(err, sql.ErrNoRows) {
		return ota.DeviceCredentials{}, deviceNotFound(product, key)
	} else if err != nil {
		return ota.DeviceCredentials{}, fmt.Errorf("device credentials: %w", err)
	}
	return c, nil
}
