package store

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/otter-ota/otter/internal/ota"
)

// ListDevices pages through the devices that match f, in id order, with
// their tags and versions.
func (s *sqlStore) ListDevices(ctx context.Context, f DeviceFilter, page Page) ([]ota.Device, string, error) {
	limit, err := pageLimit(page)
	if err != nil {
		return nil, "", err
	}
	after, err := decodeIDCursor(page.After)
	if err != nil {
		return nil, "", err
	}
	q, a := deviceQuery(f, after, limit+1, s.dialect)
	r := newDeviceRow()
	if s.dialect == sqliteDialect {
		r = deviceRow{deviceListColumns.row()}
	}
	// A product's page (online or not) and its tags and versions, planned
	// anew, cost PostgreSQL about 0.1 ms each, as much as executing them;
	// their generic plans are the custom ones (TestGenericPlansPostgres).
	// Other filters (tags, versions, a key's prefix) were not checked.
	var db querier = s.db
	if s.generic != nil && genericDeviceFilter(f) {
		db = sqlDB{DB: s.generic}
	}
	devs, err := queryCap(ctx, db, q, a, limit+1, r.scan)
	if err != nil {
		return nil, "", fmt.Errorf("list devices: %w", err)
	}
	devs, next := cutPage(devs, limit, func(d ota.Device) string { return idKey(d.ID) })
	if err := loadDeviceDetails(ctx, db, devs, s.dialect == sqliteDialect); err != nil {
		return nil, "", err
	}
	return devs, next, nil
}

// genericDeviceFilter reports whether the page of devices f selects runs
// on the pool of generic plans: a product's devices, online or not or
// either, and nothing else.
func genericDeviceFilter(f DeviceFilter) bool {
	return f.Product != "" && f.KeyPrefix == "" && len(f.Tags) == 0 && f.Module == "" && f.Version == ""
}

// deviceQuery builds the SELECT for one page of devices matching f. Tag and
// version conditions are EXISTS subqueries that the (name, value,
// device_id) and (module, version, device_id) indexes answer.
func deviceQuery(f DeviceFilter, after int64, limit int, d dialect) (string, args) {
	var a args
	where := []string{"d.id > " + a.add(after)}
	order := "d.id"
	switch {
	case f.Product != "" && f.Online != nil:
		where = append(where, "d.product = "+a.add(f.Product))
		var cond string
		cond, order = indexedEq(d, "d.online", a.add(*f.Online), "d.id")
		where = append(where, cond)
	case f.Product != "":
		var cond string
		cond, order = indexedEq(d, "d.product", a.add(f.Product), "d.id")
		where = append(where, cond)
	case f.Online != nil:
		where = append(where, "d.online = "+a.add(*f.Online))
	}
	if f.KeyPrefix != "" {
		// substr, unlike LIKE, is case-sensitive on both databases and
		// needs no escaping of % and _.
		n := a.add(utf8.RuneCountInString(f.KeyPrefix))
		where = append(where, "substr(d.key, 1, "+n+") = "+a.add(f.KeyPrefix))
	}
	for _, name := range slices.Sorted(maps.Keys(f.Tags)) {
		where = append(where, "EXISTS (SELECT 1 FROM device_tags t WHERE t.device_id = d.id AND t.name = "+
			a.add(name)+" AND t.value = "+a.add(f.Tags[name])+")")
	}
	if f.Module != "" || f.Version != "" {
		where = append(where, versionCondition(&a, f.Module, f.Version))
	}
	cols := deviceColumns
	if d == sqliteDialect {
		cols = deviceListColumns.sql
	}
	q := "SELECT " + cols + " FROM devices d WHERE " + strings.Join(where, " AND ") +
		" ORDER BY " + order + " LIMIT " + a.add(limit)
	return q, a
}

func versionCondition(a *args, module, version string) string {
	if module == "" {
		module = ota.DefaultModule
	}
	c := "EXISTS (SELECT 1 FROM device_versions v WHERE v.device_id = d.id AND v.module = " + a.add(module)
	if version != "" {
		c += " AND v.version = " + a.add(version)
	}
	return c + ")"
}
