package client

import (
	"context"
	"iter"
	"net/url"
	"strconv"
	"time"
)

// EventFilter narrows the event log. Zero fields do not filter.
type EventFilter struct {
	Kind     string // product, device, firmware, task, job, token
	Actor    string
	Product  string
	Device   string
	Task     int64
	Job      int64
	Firmware int64
	// Since and Until bound the events' time.
	Since time.Time
	Until time.Time
}

func (f EventFilter) query() url.Values {
	q := url.Values{}
	setIf(q, "kind", f.Kind)
	setIf(q, "actor", f.Actor)
	setIf(q, "product", f.Product)
	setIf(q, "device", f.Device)
	setID(q, "task", f.Task)
	setID(q, "job", f.Job)
	setID(q, "firmware", f.Firmware)
	setTime(q, "since", f.Since)
	setTime(q, "until", f.Until)
	return q
}

// ListEvents returns one page of the events that match f, newest first.
func (c *Client) ListEvents(ctx context.Context, f EventFilter, opts ListOptions) (*Page[Event], error) {
	return getPage[Event](ctx, c, "/events", f.query(), opts)
}

// AllEvents iterates over every event that matches f, newest first.
func (c *Client) AllEvents(ctx context.Context, f EventFilter, opts ListOptions) iter.Seq2[Event, error] {
	return all(ctx, opts, func(ctx context.Context, o ListOptions) (*Page[Event], error) {
		return c.ListEvents(ctx, f, o)
	})
}

// SigningKey returns the public key that signs firmware manifests.
func (c *Client) SigningKey(ctx context.Context) (*SigningKey, error) {
	var out SigningKey
	if err := c.call(ctx, request{method: "GET", path: "/signing-key"}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

func setID(q url.Values, name string, id int64) {
	if id != 0 {
		q.Set(name, strconv.FormatInt(id, 10))
	}
}

func setTime(q url.Values, name string, t time.Time) {
	if !t.IsZero() {
		q.Set(name, t.UTC().Format(time.RFC3339Nano))
	}
}
