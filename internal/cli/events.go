package cli

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/otter-ota/otter/client"
)

// defaultEventLimit keeps a bare `otter events` to a screenful: the log of a
// fleet grows by millions of job events.
const defaultEventLimit = 100

func (a *app) eventsCommand() *cobra.Command {
	var (
		f            client.EventFilter
		since, until string
		limit        int
	)
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Show the event log, newest first",
		Long: `Show the event log (every change to products, devices, firmware, tasks, jobs
and tokens), newest first. --since and --until take a time (RFC 3339 or a
date) or an age such as 30m, 2h or 7d. Shows the newest 100 events unless
--limit says otherwise (--limit 0: all).`,
		Example: `  otter events
  otter events --product demo --device d1 --since 2h
  otter events --kind firmware --since 2026-01-01 --limit 0 -o json`,
		Args: needArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			now := a.now()
			if f.Since, err = parseTime("--since", since, now); err != nil {
				return err
			}
			if f.Until, err = parseTime("--until", until, now); err != nil {
				return err
			}
			if err := checkLimit(limit); err != nil {
				return err
			}
			items, err := collect(a.client().AllEvents(cmd.Context(), f, pageOptions(limit)), limit)
			if err != nil {
				return err
			}
			return a.render(items, func(w io.Writer) error { return writeEvents(w, items, now) })
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.Kind, "kind", "", "only events of kind `K`: product, device, firmware, task, job, token, session or setting")
	fl.StringVar(&f.Actor, "actor", "", "only events by actor `A` (a token name, device, engine, system)")
	fl.StringVar(&f.Product, "product", "", "only events of product `P`")
	fl.StringVar(&f.Device, "device", "", "only events of device `D`")
	fl.Int64Var(&f.Task, "task", 0, "only events of task `ID`")
	fl.Int64Var(&f.Job, "job", 0, "only events of job `ID`")
	fl.Int64Var(&f.Firmware, "firmware", 0, "only events of firmware `ID`")
	fl.StringVar(&since, "since", "", "only events at or after `T`")
	fl.StringVar(&until, "until", "", "only events before `T`")
	fl.IntVar(&limit, "limit", defaultEventLimit, "print at most `N` events (0: all)")
	return cmd
}

func writeEvents(w io.Writer, es []client.Event, now time.Time) error {
	t := newTable(w, "TIME", "ACTOR", "KIND", "ACTION", "SUBJECT", "MESSAGE")
	for _, e := range es {
		t.row(formatAge(e.At, now), e.Actor, e.Kind, e.Action, eventSubject(&e), eventMessage(&e))
	}
	return t.flush()
}

// eventSubject names what an event is about: device, firmware, task, job.
func eventSubject(e *client.Event) string {
	var parts []string
	switch {
	case e.Device != "":
		parts = append(parts, e.Product+"/"+e.Device)
	case e.Product != "":
		parts = append(parts, e.Product)
	}
	for _, id := range []struct {
		name string
		id   int64
	}{{"firmware", e.FirmwareID}, {"task", e.TaskID}, {"job", e.JobID}} {
		if id.id != 0 {
			parts = append(parts, fmt.Sprintf("%s %d", id.name, id.id))
		}
	}
	return orDash(strings.Join(parts, " "))
}

// eventMessage is the event's message followed by its data.
func eventMessage(e *client.Event) string {
	if len(e.Data) == 0 {
		return orDash(e.Message)
	}
	if e.Message == "" {
		return formatPairs(e.Data)
	}
	return e.Message + " " + formatPairs(e.Data)
}
