package store

import (
	"context"
	"fmt"

	"github.com/otter-ota/otter/internal/ota"
)

// JobsWithVersions returns up to q.Limit jobs of a task in q.States with
// ids above q.AfterID, in id order, each with its device's version of the
// job's module.
func (s *sqlStore) JobsWithVersions(ctx context.Context, q ota.JobVersionQuery) ([]ota.JobVersion, error) {
	var a args
	join := " LEFT JOIN "
	if q.Reported {
		join = " JOIN "
	}
	query := "SELECT " + jobColumns + ", COALESCE(v.version, '') FROM jobs j" + join +
		"device_versions v ON v.device_id = j.device_id AND v.module = j.module WHERE j.task_id = " + a.add(q.TaskID) +
		" AND j.state IN (" + in(&a, q.States) + ")" + devicesIn(&a, q.Devices) + " AND j.id > " + a.add(q.AfterID) + " ORDER BY j.id LIMIT " + a.add(q.Limit)
	r := newJobRow(1)
	out, err := queryAll(ctx, s.db, query, a, func(row interface{ Scan(...any) error }) (ota.JobVersion, error) {
		j, err := r.scan(row)
		if err != nil {
			return ota.JobVersion{}, err
		}
		jv := ota.JobVersion{Job: j, Version: r.str(jobColumnCount)}
		return jv, r.err
	})
	if err != nil {
		return nil, fmt.Errorf("jobs of task %d with versions: %w", q.TaskID, err)
	}
	return out, nil
}

// LatestEndedJobs returns, for each of the given devices and each module,
// its latest job when that job failed or timed out: the job a late report
// of the target version settles.
func (s *sqlStore) LatestEndedJobs(ctx context.Context, deviceIDs []int64) ([]ota.Job, error) {
	jobs, err := byIDs(ctx, s.db, "SELECT "+jobColumns+" FROM jobs j WHERE j.id IN (SELECT MAX(job_id) FROM job_devices"+
		" WHERE device_id IN (%s) GROUP BY device_id, module) AND j.state IN ('failed', 'timed_out')", deviceIDs)
	if err != nil {
		return nil, fmt.Errorf("latest ended jobs: %w", err)
	}
	return jobs, nil
}

// TaskMembers says which of the given devices have a job in which of the
// given tasks, cancelled jobs aside (a device whose job was cancelled as not
// applicable may match again later).
func (s *sqlStore) TaskMembers(ctx context.Context, taskIDs, deviceIDs []int64) (map[ota.TaskDevice]bool, error) {
	out := map[ota.TaskDevice]bool{}
	if len(taskIDs) == 0 || len(deviceIDs) == 0 {
		return out, nil
	}
	for _, chunk := range chunks(deviceIDs, 2) { // room for the task ids
		var a args
		q := "SELECT j.task_id, j.device_id FROM job_devices jd JOIN jobs j ON j.id = jd.job_id WHERE jd.device_id IN (" +
			in(&a, chunk) + ") AND j.task_id IN (" + in(&a, taskIDs) + ") AND j.state <> 'cancelled'"
		members, err := queryAll(ctx, s.db, q, a, func(row interface{ Scan(...any) error }) (ota.TaskDevice, error) {
			var m ota.TaskDevice
			return m, row.Scan(&m.TaskID, &m.DeviceID)
		})
		if err != nil {
			return nil, fmt.Errorf("task members: %w", err)
		}
		for _, m := range members {
			out[m] = true
		}
	}
	return out, nil
}

// DevicesByID returns the given devices with their tags and versions
// (unknown ids are skipped).
func (s *sqlStore) DevicesByID(ctx context.Context, ids []int64) ([]ota.Device, error) {
	var out []ota.Device
	for _, chunk := range chunks(ids, 1) {
		var a args
		devs, err := queryAll(ctx, s.db, "SELECT "+deviceColumns+" FROM devices d WHERE d.id IN ("+in(&a, chunk)+") ORDER BY d.id", a, scanDevice)
		if err != nil {
			return nil, fmt.Errorf("devices by id: %w", err)
		}
		if err := loadDeviceDetails(ctx, s.db, devs, s.dialect == sqliteDialect); err != nil {
			return nil, err
		}
		out = append(out, devs...)
	}
	return out, nil
}

// devicesIn narrows a job query to the given device keys, when any.
func devicesIn(a *args, keys []string) string {
	if len(keys) == 0 {
		return ""
	}
	return " AND j.device IN (" + in(a, keys) + ")"
}
