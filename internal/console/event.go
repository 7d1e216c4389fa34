package console

import (
	"net/http"
	"strconv"
	"time"

	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/store"
)

// eventKinds are the kinds the event filter offers.
var eventKinds = []string{ota.KindProduct, ota.KindDevice, ota.KindFirmware, ota.KindTask, ota.KindJob, ota.KindToken, ota.KindSession, "setting"}

// eventsPage is the data of the audit log.
type eventsPage struct {
	base
	Filter *form
	Kinds  []string
	Events []ota.Event
	Pager  pager
}

func (c *Console) events(w http.ResponseWriter, r *http.Request, s *session) error {
	f := newForm(r.URL.Query())
	data := &eventsPage{base: c.base(s, "Events", "events"), Filter: f, Kinds: eventKinds}
	filter := eventFilter(f)
	if f.OK() {
		items, next, err := c.store.ListEvents(r.Context(), filter, pageOf(r, pageSize))
		if ota.ErrorCode(err) == ota.EINVALID {
			f.Fail("", err)
		} else if err != nil {
			return err
		}
		data.Events, data.Pager = items, newPager(r, next)
	}
	c.render(w, r, http.StatusOK, "events", data)
	return nil
}

// eventFilter reads the audit log's filters: who (actor), what (kind,
// product, device, task, job, firmware) and when (since, until, in UTC).
func eventFilter(f *form) store.EventFilter {
	filter := store.EventFilter{Kind: f.Get("kind"), Actor: f.Get("actor"), Product: f.Get("product"), Device: f.Get("device")}
	filter.TaskID = optionalID(f, "task")
	filter.JobID = optionalID(f, "job")
	filter.Firmware = optionalID(f, "firmware")
	filter.Since = optionalTime(f, "since")
	filter.Until = optionalTime(f, "until")
	if !filter.Since.IsZero() && !filter.Until.IsZero() && !filter.Until.After(filter.Since) {
		f.Errors["until"] = "Until must be after since."
	}
	return filter
}

func optionalID(f *form, name string) int64 {
	s := f.Get(name)
	if s == "" {
		return 0
	}
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 {
		f.Errors[name] = "Enter an id: a whole number above 0."
		return 0
	}
	return id
}

// optionalTime reads a datetime-local field, in UTC.
func optionalTime(f *form, name string) time.Time {
	s := f.Get(name)
	if s == "" {
		return time.Time{}
	}
	for _, layout := range append([]string{time.RFC3339}, dateTimeLayouts...) {
		if t, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
			return t.UTC()
		}
	}
	f.Errors[name] = "Enter a date and time in UTC such as 2026-12-01T02:00."
	return time.Time{}
}
