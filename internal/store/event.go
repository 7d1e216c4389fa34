package store

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/otter-ota/otter/internal/ota"
)

// ListEvents pages through the events that match f, newest first.
func (s *sqlStore) ListEvents(ctx context.Context, f EventFilter, page Page) ([]ota.Event, string, error) {
	limit, err := pageLimit(page)
	if err != nil {
		return nil, "", err
	}
	before, err := decodeIDCursor(page.After)
	if err != nil {
		return nil, "", err
	}
	q, a := eventQuery(f, before, limit+1, s.dialect)
	r := newEventRow()
	if s.dialect == sqliteDialect {
		r = eventRow{eventPackedColumns.row()}
	}
	var db querier = s.db
	if s.generic != nil && genericEventFilter(f) {
		db = sqlDB{DB: s.generic}
	}
	events, err := queryCap(ctx, db, q, a, limit+1, r.scan)
	if err != nil {
		return nil, "", fmt.Errorf("list events: %w", err)
	}
	events, next := cutPage(events, limit, func(e ota.Event) string { return idKey(e.ID) })
	return events, next, nil
}

// genericEventFilter reports whether the page of events f selects runs on
// the pool of generic plans: a device's events (planning its two branches
// cost 0.4 to 2.3 ms a page), and the pages read backwards through one
// (column, id) index, by kind, actor, task or firmware or none, whose
// planning (0.12-0.16 ms at 1,000,000 events) cost more than executing
// them (0.02-0.08 ms). Their generic plans are the custom ones
// (TestGenericPlansPostgres). A range of times is left to custom plans:
// a short one may be read better through events_at.
func genericEventFilter(f EventFilter) bool {
	if leadColumn(f) == "device" {
		return true
	}
	return f.Product == "" && f.Device == "" && f.JobID == 0 && f.Since.IsZero() && f.Until.IsZero()
}

// eventQuery builds the SELECT for one page of events matching f, older
// than the event with id before (0: from the newest).
func eventQuery(f EventFilter, before int64, limit int, d dialect) (string, args) {
	var a args
	var where []string
	add := func(cond string, v any) { where = append(where, cond+" "+a.add(v)) }
	if before > 0 {
		add("id <", before)
	}
	lead := leadColumn(f)
	order := "id"
	for _, c := range []struct {
		col string
		v   any
		set bool
	}{{"kind", f.Kind, f.Kind != ""}, {"actor", f.Actor, f.Actor != ""}, {"product", f.Product, f.Product != ""},
		{"device", f.Device, f.Device != ""}, {"task_id", f.TaskID, f.TaskID != 0}, {"job_id", f.JobID, f.JobID != 0},
		{"firmware_id", f.Firmware, f.Firmware != 0}} {
		switch {
		case !c.set:
		case lead == "device" && (c.col == "device" || c.col == "product"):
			// deviceEventQuery places them.
		case c.col == lead:
			var cond string
			cond, order = indexedEq(d, c.col, a.add(c.v), "id")
			where = append(where, cond)
		default:
			add(c.col+" =", c.v)
		}
	}
	if f.Device != "" && lead != "device" {
		where = append(where, "device <> ''")
	}
	if !f.Since.IsZero() {
		add("at >=", f.Since.UTC())
	}
	if !f.Until.IsZero() {
		add("at <", f.Until.UTC())
	}
	cols := eventListColumns
	if d == sqliteDialect {
		cols = eventPackedColumns.sql
	}
	if lead == "device" {
		return deviceEventQuery(f, where, &a, cols, limit, d), a
	}
	q := "SELECT " + cols + " FROM events"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	return q + " ORDER BY " + descending(order) + " LIMIT " + a.add(limit), a
}

// deviceEventQuery builds the SELECT for a page of one device's events
// that also match the conditions where. A device's events other than job
// events are found in the partial index on (product, device, id); its job
// events through its jobs (job_devices, then events_job): the index has no
// entries for job events, which would land at a random place of it with
// every job the engine starts (see migration 00013). The jobs are those of
// the device now under the key and of the devices deleted under it
// (former_devices), so a deleted device's history stays listed under its
// key. Each part yields at most a page, newest first, and the page is the
// newest of both.
func deviceEventQuery(f EventFilter, where []string, a *args, cols string, limit int, d dialect) string {
	product, device, n := a.add(f.Product), a.add(f.Device), a.add(limit)
	cond, order := indexedEq(d, "device", device, "id")
	other := append(slices.Clip(where), "product = "+product, cond, "device <> ''", "job_id IS NULL")
	jobs := append(slices.Clip(where), "product = "+product, "device = "+device, "job_id IS NOT NULL",
		"job_id IN (SELECT job_id FROM job_devices WHERE device_id IN (SELECT id FROM devices WHERE product = "+product+
			" AND key = "+device+" UNION ALL SELECT id FROM former_devices WHERE product = "+product+" AND key = "+device+"))")
	// SQLite plans by rule and, given a kind too, would page through
	// events_kind: every job event of the database.
	from, fromJobs := "events", "events"
	if d == sqliteDialect {
		from, fromJobs = "events INDEXED BY events_device", "events INDEXED BY events_job"
	}
	return "SELECT " + cols + " FROM (" +
		"SELECT * FROM (SELECT * FROM " + from + " WHERE " + strings.Join(other, " AND ") +
		" ORDER BY " + descending(order) + " LIMIT " + n + ") o UNION ALL " +
		"SELECT * FROM (SELECT * FROM " + fromJobs + " WHERE " + strings.Join(jobs, " AND ") +
		" ORDER BY id DESC LIMIT " + n + ") j) e ORDER BY id DESC LIMIT " + n
}

// leadColumn names the column whose (column, id) index a list pages
// through: that of the most selective filter that has one; the other
// filters only filter.
func leadColumn(f EventFilter) string {
	switch {
	case f.JobID != 0:
		return "job_id"
	case f.Product != "" && f.Device != "":
		return "device"
	case f.TaskID != 0:
		return "task_id"
	case f.Firmware != 0:
		return "firmware_id"
	case f.Actor != "":
		return "actor"
	case f.Kind != "":
		return "kind"
	}
	return ""
}

func queryEvents(ctx context.Context, q querier, query string, a args) ([]ota.Event, error) {
	return queryAll(ctx, q, query, a, newEventRow().scan)
}

// eventListColumns are the columns eventRow reads.
const eventListColumns = "id, " + eventColumns

// eventPackedColumns are eventListColumns packed into one column, as the
// list reads them on SQLite.
var eventPackedColumns = packColumns(eventListColumns, "actor", "kind", "action", "product", "device", "message", "data")

// eventRow reads rows of eventListColumns into values reused from row
// to row (see rowValues).
type eventRow struct{ *rowValues }

func newEventRow() eventRow { return eventRow{newRowValues(12)} }

func (r eventRow) scan(row interface{ Scan(...any) error }) (ota.Event, error) {
	if err := r.rowValues.scan(row); err != nil {
		return ota.Event{}, err
	}
	e := ota.Event{ID: r.int64(0), Actor: r.str(2), Kind: r.str(3), Action: r.str(4), Product: r.str(5), Device: r.str(6),
		FirmwareID: r.nullInt64(7), TaskID: r.nullInt64(8), JobID: r.nullInt64(9), Message: r.str(10)}
	at, data := r.time(1), r.str(11)
	if r.err != nil {
		return ota.Event{}, fmt.Errorf("event %d: %w", e.ID, r.err)
	}
	if !at.Valid {
		return ota.Event{}, fmt.Errorf("event %d has no time", e.ID)
	}
	e.At = at.Time.UTC()
	var err error
	if e.Data, err = decodeMap(data); err != nil {
		return ota.Event{}, err
	}
	if len(e.Data) == 0 {
		e.Data = nil // omitted from JSON, as the field's tag asks
	}
	return e, nil
}

// descending turns "a, b" into "a DESC, b DESC".
func descending(order string) string {
	return strings.ReplaceAll(order, ",", " DESC,") + " DESC"
}
