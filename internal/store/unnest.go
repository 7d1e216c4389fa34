package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/otter-ota/otter/internal/ota"
)

// On PostgreSQL a batch's job changes and events are each written by one
// statement whose rows come from arrays, one array a column
// (FROM unnest($1::bigint[], ...)), rather than by multi-row VALUES lists
// in power-of-two chunks: one round trip instead of six for a batch of
// 1,000, and a statement of 15 parameters instead of up to 7,000 typed
// placeholders, each bound and planned by PostgreSQL on every execution.

// pgTimes is a nullable timestamptz array.
func pgTimes(n int) []pgtype.Timestamptz { return make([]pgtype.Timestamptz, 0, n) }

func pgTime(t *time.Time) pgtype.Timestamptz {
	if t == nil {
		return pgtype.Timestamptz{}
	}
	return pgtype.Timestamptz{Time: t.UTC(), Valid: true}
}

// updateJobsUnnest is updateJobChunk for PostgreSQL, for every change of
// the batch at once. It returns the ids written (the others moved on
// since they were read: conflicts).
func updateJobsUnnest(ctx context.Context, t *tx, changes []ota.JobUpdate, withActive bool) ([]int64, error) {
	n := len(changes)
	var (
		ids, revs                        = make([]int64, 0, n), make([]int64, 0, n)
		states, codes, messages, froms   = make([]string, 0, n), make([]string, 0, n), make([]string, 0, n), make([]string, 0, n)
		percents, attempts, phases       = make([]int32, 0, n), make([]int32, 0, n), make([]int32, 0, n)
		started, deadlines, nexts, sents = pgTimes(n), pgTimes(n), pgTimes(n), pgTimes(n)
		updated                          = make([]time.Time, 0, n)
		active                           = make([]bool, 0, n)
	)
	for _, c := range changes {
		j := c.New
		ids, revs = append(ids, j.ID), append(revs, c.Old.Rev)
		states, codes, messages, froms = append(states, string(j.State)), append(codes, j.Code), append(messages, j.Message), append(froms, j.FromVersion)
		percents, attempts, phases = append(percents, int32(j.Percent)), append(attempts, int32(j.Attempt)), append(phases, int32(j.Phase))
		started, deadlines = append(started, pgTime(j.StartedAt)), append(deadlines, pgTime(j.Deadline))
		nexts, sents = append(nexts, pgTime(j.NextAttemptAt)), append(sents, pgTime(j.SentAt))
		updated, active = append(updated, j.UpdatedAt.UTC()), append(active, !j.State.Terminal())
	}
	set := "state = v.state, percent = v.percent, attempt = v.attempt, code = v.code, message = v.message, phase = v.phase," +
		" from_version = v.from_version, started_at = v.started_at, deadline = v.deadline, next_attempt_at = v.next_attempt_at," +
		" sent_at = v.sent_at, updated_at = v.updated_at, rev = jobs.rev + 1"
	if withActive {
		// See updateJobChunk: active is set only when a job ends or
		// comes back, so other changes leave the one-active index alone.
		set += ", active = v.active"
	}
	q := "UPDATE jobs SET " + set + " FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::integer[], $5::integer[]," +
		" $6::text[], $7::text[], $8::integer[], $9::text[], $10::timestamptz[], $11::timestamptz[], $12::timestamptz[]," +
		" $13::timestamptz[], $14::timestamptz[], $15::boolean[]) AS v (id, rev, state, percent, attempt, code, message, phase," +
		" from_version, started_at, deadline, next_attempt_at, sent_at, updated_at, active)" +
		" WHERE jobs.id = v.id AND jobs.rev = v.rev RETURNING jobs.id"
	res, err := t.QueryContext(ctx, q, ids, revs, states, percents, attempts, codes, messages, phases, froms,
		started, deadlines, nexts, sents, updated, active)
	if err != nil {
		return nil, fmt.Errorf("update jobs: %w", err)
	}
	defer res.Close()
	written := make([]int64, 0, n)
	for res.Next() {
		var id int64
		if err := res.Scan(&id); err != nil {
			return nil, err
		}
		written = append(written, id)
	}
	return written, res.Err()
}

// addEventsUnnest is addEvents for PostgreSQL: every event in one INSERT.
func (t *tx) addEventsUnnest(ctx context.Context, events []ota.Event) error {
	n := len(events)
	var (
		ats                                       = make([]time.Time, 0, n)
		actors, kinds, actions, products, devices = make([]string, 0, n), make([]string, 0, n), make([]string, 0, n), make([]string, 0, n), make([]string, 0, n)
		firmware, tasks, jobs                     = make([]*int64, 0, n), make([]*int64, 0, n), make([]*int64, 0, n)
		messages, data                            = make([]string, 0, n), make([]string, 0, n)
	)
	for _, e := range events {
		at, actor := t.eventStamp(e)
		ats, actors, kinds, actions = append(ats, at.UTC()), append(actors, actor), append(kinds, e.Kind), append(actions, e.Action)
		products, devices = append(products, e.Product), append(devices, e.Device)
		firmware, tasks, jobs = append(firmware, idPtr(e.FirmwareID)), append(tasks, idPtr(e.TaskID)), append(jobs, idPtr(e.JobID))
		messages, data = append(messages, e.Message), append(data, encodeMap(e.Data))
	}
	q := "INSERT INTO events (" + eventColumns + ") SELECT * FROM unnest($1::timestamptz[], $2::text[], $3::text[]," +
		" $4::text[], $5::text[], $6::text[], $7::bigint[], $8::bigint[], $9::bigint[], $10::text[], $11::text[])"
	if _, err := t.ExecContext(ctx, q, ats, actors, kinds, actions, products, devices, firmware, tasks, jobs, messages, data); err != nil {
		return fmt.Errorf("record event: %w", err)
	}
	return nil
}

// idPtr is nullID for an array element: 0 is NULL.
func idPtr(id int64) *int64 {
	if id == 0 {
		return nil
	}
	return &id
}
