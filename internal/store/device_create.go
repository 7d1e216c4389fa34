package store

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/otter-ota/otter/internal/ota"
)

// deviceRef names a device across products.
type deviceRef struct{ product, key string }

// pair is one row of device_tags or device_versions.
type pair struct {
	deviceID    int64
	name, value string
}

// CreateDevices creates all the devices or none, with multi-row INSERTs.
// Duplicates, stored already or repeated in devs, answer ECONFLICT with
// their keys in Details; an unknown product answers ENOTFOUND.
func (s *sqlStore) CreateDevices(ctx context.Context, devs []NewDevice) ([]ota.Device, error) {
	if len(devs) == 0 {
		return []ota.Device{}, nil
	}
	if err := checkNewDevices(devs); err != nil {
		return nil, err
	}
	t, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer t.Rollback()
	if err := checkProductsExist(ctx, t, devs); err != nil {
		return nil, err
	}
	if err := checkDevicesAbsent(ctx, t, devs); err != nil {
		return nil, err
	}
	if devs, err = keepSealedFor(ctx, t, devs); err != nil {
		return nil, err
	}
	out, err := insertDevices(ctx, t, devs)
	if err != nil {
		return nil, err
	}
	if err := t.Commit(); err != nil {
		return nil, err
	}
	s.refreshStatistics(ctx, len(devs))
	return out, nil
}

// bulkAnalyze is the number of devices created at once after which
// PostgreSQL's planner statistics are refreshed.
const bulkAnalyze = 1000

// refreshStatistics refreshes PostgreSQL's statistics after a bulk import.
// Until autovacuum gets to it, the planner would believe the tables are as
// small as before: with a freshly imported fleet it chose nested loops that
// made a tag-filtered page take 400 ms instead of 1 ms. ANALYZE samples a
// bounded number of rows, so it stays cheap on large tables. SQLite plans
// these queries well without statistics, and its ANALYZE reads everything.
func (s *sqlStore) refreshStatistics(ctx context.Context, created int) {
	if s.dialect != postgresDialect || created < bulkAnalyze {
		return
	}
	if _, err := s.db.ExecContext(ctx, `ANALYZE devices, device_tags, device_versions`); err != nil {
		s.logger.Warn("cannot refresh planner statistics after a device import", "err", err)
	}
}

// checkNewDevices validates devs and refuses keys given twice.
func checkNewDevices(devs []NewDevice) error {
	seen := make(map[deviceRef]bool, len(devs))
	var dups []string
	for _, d := range devs {
		if err := checkNewDevice(d); err != nil {
			return err
		}
		ref := deviceRef{d.Product, d.Key}
		if seen[ref] {
			dups = append(dups, d.Key)
		}
		seen[ref] = true
	}
	if len(dups) > 0 {
		dups = uniq(dups)
		err := ota.Errorf(ota.ECONFLICT, "the list names %s more than once: %s",
			plural(int64(len(dups)), "device", "devices"), listKeys(dups))
		err.Details = dups
		return err
	}
	return nil
}

func checkNewDevice(d NewDevice) error {
	if err := checkKey("product", d.Product); err != nil {
		return err
	}
	if err := checkKey("device", d.Key); err != nil {
		return err
	}
	if len(d.SecretHash) == 0 {
		return invalid("device %q needs a secret hash", d.Key)
	}
	if err := checkTags(d.Key, d.Tags); err != nil {
		return err
	}
	for module, version := range d.Versions {
		if module == "" || version == "" {
			return invalid("device %q: a reported version needs a module and a version, got %q=%q", d.Key, module, version)
		}
	}
	return nil
}

// checkTags refuses tags with an empty name.
func checkTags(device string, tags map[string]string) error {
	if _, ok := tags[""]; ok {
		return invalid("device %q: every tag needs a name", device)
	}
	return nil
}

// checkProductsExist answers ENOTFOUND for the first product of devs that
// does not exist.
func checkProductsExist(ctx context.Context, q querier, devs []NewDevice) error {
	want := map[string]bool{}
	for _, d := range devs {
		want[d.Product] = true
	}
	products := slices.Sorted(maps.Keys(want))
	var a args
	rows, err := q.QueryContext(ctx, `SELECT key FROM products WHERE key IN (`+in(&a, products)+`)`, a...)
	if err != nil {
		return fmt.Errorf("create devices: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			return fmt.Errorf("create devices: %w", err)
		}
		delete(want, k)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("create devices: %w", err)
	}
	for _, p := range products {
		if want[p] {
			return notFound("product %q does not exist", p)
		}
	}
	return nil
}

// keepSealedFor returns devs without the sealed secrets of devices whose
// product does not keep them (not ota.ProtocolEnOS), reading each product's
// protocol under its row lock.
func keepSealedFor(ctx context.Context, q querier, devs []NewDevice) ([]NewDevice, error) {
	protocols := map[string]string{}
	out, cloned := devs, false
	for i, d := range devs {
		if d.SecretSealed == nil {
			continue
		}
		p, ok := protocols[d.Product]
		if !ok {
			var err error
			if p, err = productProtocol(ctx, q, d.Product); err != nil {
				return nil, err
			}
			protocols[d.Product] = p
		}
		if p != ota.ProtocolEnOS {
			if !cloned {
				out, cloned = slices.Clone(devs), true
			}
			out[i].SecretSealed = nil
		}
	}
	return out, nil
}

// checkDevicesAbsent answers ECONFLICT, listing them, when devices of devs
// exist already.
func checkDevicesAbsent(ctx context.Context, q querier, devs []NewDevice) error {
	byProduct := map[string][]string{}
	for _, d := range devs {
		byProduct[d.Product] = append(byProduct[d.Product], d.Key)
	}
	var found []string
	for product, keys := range byProduct {
		for _, chunk := range chunks(keys, 1) {
			k, err := existingKeys(ctx, q, product, chunk)
			if err != nil {
				return fmt.Errorf("create devices: %w", err)
			}
			found = append(found, k...)
		}
	}
	if len(found) == 0 {
		return nil
	}
	slices.Sort(found)
	err := ota.Errorf(ota.ECONFLICT, "%s already exist: %s",
		plural(int64(len(found)), "device", "devices"), listKeys(found))
	if len(found) == 1 {
		err.Message = fmt.Sprintf("device %q already exists", found[0])
	}
	err.Details = found
	return err
}

func existingKeys(ctx context.Context, q querier, product string, keys []string) ([]string, error) {
	a := args{product}
	rows, err := q.QueryContext(ctx, `SELECT key FROM devices WHERE product = $1 AND key IN (`+in(&a, keys)+`)`, a...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var found []string
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			return nil, err
		}
		found = append(found, k)
	}
	return found, rows.Err()
}

// insertDevices inserts devs with their tags, versions and events, and
// returns them as stored, in the order given.
func insertDevices(ctx context.Context, t *tx, devs []NewDevice) ([]ota.Device, error) {
	ids := make(map[deviceRef]int64, len(devs))
	for _, chunk := range chunks(devs, 4) {
		if err := insertDeviceRows(ctx, t, chunk, ids); err != nil {
			return nil, err
		}
	}
	out := make([]ota.Device, len(devs))
	var tags, versions []pair
	events := make([]ota.Event, len(devs))
	for i, d := range devs {
		id := ids[deviceRef{d.Product, d.Key}]
		out[i] = ota.Device{ID: id, Product: d.Product, Key: d.Key, CreatedAt: t.now,
			Tags: maps.Clone(d.Tags), Versions: maps.Clone(d.Versions)}
		out[i].Tags, out[i].Versions = orEmpty(out[i].Tags), orEmpty(out[i].Versions)
		tags = append(tags, pairsOf(id, d.Tags)...)
		versions = append(versions, pairsOf(id, d.Versions)...)
		events[i] = ota.Event{Kind: ota.KindDevice, Action: "created", Product: d.Product, Device: d.Key}
	}
	if err := insertPairs(ctx, t, "device_tags (device_id, name, value)", tags); err != nil {
		return nil, fmt.Errorf("create device tags: %w", err)
	}
	if err := insertVersions(ctx, t, versions); err != nil {
		return nil, fmt.Errorf("create device versions: %w", err)
	}
	if err := t.addEvents(ctx, events); err != nil {
		return nil, err
	}
	return out, nil
}

// insertDeviceRows inserts one chunk of devices and records their ids.
func insertDeviceRows(ctx context.Context, t *tx, devs []NewDevice, ids map[deviceRef]int64) error {
	a := make(args, 0, len(devs)*5)
	for _, d := range devs {
		a = append(a, d.Product, d.Key, d.SecretHash, d.SecretSealed, t.now)
	}
	rows, err := t.QueryContext(ctx, `INSERT INTO devices (product, key, secret_hash, secret_sealed, created_at) VALUES `+
		values(len(devs), 5)+` RETURNING id, product, key`, a...)
	if err != nil {
		return insertDevicesError(err)
	}
	defer rows.Close()
	for rows.Next() {
		var ref deviceRef
		var id int64
		if err := rows.Scan(&id, &ref.product, &ref.key); err != nil {
			return fmt.Errorf("create devices: %w", err)
		}
		ids[ref] = id
	}
	if err := rows.Err(); err != nil {
		return insertDevicesError(err)
	}
	return nil
}

// insertDevicesError explains a unique violation that slipped past the
// checks: another request created one of the devices at the same time.
func insertDevicesError(err error) error {
	if isUniqueViolation(err) {
		return conflict("some of these devices were created at the same time by another request: list them and try again")
	}
	return fmt.Errorf("create devices: %w", err)
}

// insertPairs inserts rows into table, "name (device_id, k, v)".
func insertPairs(ctx context.Context, q querier, table string, rows []pair) error {
	for _, chunk := range chunks(rows, 3) {
		a := make(args, 0, len(chunk)*3)
		for _, r := range chunk {
			a = append(a, r.deviceID, r.name, r.value)
		}
		if _, err := q.ExecContext(ctx, "INSERT INTO "+table+" VALUES "+values(len(chunk), 3), a...); err != nil {
			return err
		}
	}
	return nil
}

// insertVersions stores reported versions, stamped with the transaction's time.
func insertVersions(ctx context.Context, t *tx, rows []pair) error {
	for _, chunk := range chunks(rows, 4) {
		a := make(args, 0, len(chunk)*4)
		for _, r := range chunk {
			a = append(a, r.deviceID, r.name, r.value, t.now)
		}
		q := "INSERT INTO device_versions (device_id, module, version, reported_at) VALUES " + values(len(chunk), 4)
		if _, err := t.ExecContext(ctx, q, a...); err != nil {
			return err
		}
	}
	return nil
}

// pairsOf turns a device's map into rows, sorted for stable statements.
func pairsOf(id int64, m map[string]string) []pair {
	rows := make([]pair, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		rows = append(rows, pair{id, k, m[k]})
	}
	return rows
}

func orEmpty(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// uniq returns keys without repeats, in first-seen order.
func uniq(keys []string) []string {
	seen := map[string]bool{}
	out := keys[:0:0]
	for _, k := range keys {
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	return out
}

// listKeys quotes the first few keys for a message; Details has them all.
func listKeys(keys []string) string {
	const shown = 5
	q := make([]string, 0, shown)
	for _, k := range keys[:min(shown, len(keys))] {
		q = append(q, fmt.Sprintf("%q", k))
	}
	s := strings.Join(q, ", ")
	if len(keys) > shown {
		s += fmt.Sprintf(" and %d more", len(keys)-shown)
	}
	return s
}
