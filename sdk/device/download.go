package device

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/otter-ota/otter/sdk/wire"
)

const (
	// maxDownloadFailures is how many tries in a row may fail without a
	// single new byte before the job fails with download_failed.
	maxDownloadFailures = 8
	// copyBufferSize is the one buffer a download uses; it is allocated per
	// download, not per client, so idle clients cost nothing.
	copyBufferSize = 16 << 10
	// reportTimeout bounds a best-effort progress report.
	reportTimeout = 5 * time.Second
)

var (
	errTooSlow  = errors.New("the download is slower than the minimum rate")
	errDeadline = errors.New("the download passed its overall deadline")
)

// download fetches the current job's file into its .part file, resuming
// what an earlier try or an earlier run left, and verifies it. It returns
// the path of the verified file.
func (c *Client) download(ctx context.Context) (string, error) {
	path, err := c.partPath()
	if err != nil {
		return "", failure(wire.FailDownload, "create the download file: %v", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return "", failure(wire.FailDownload, "open the download file: %v", err)
	}
	defer f.Close()
	deadline := c.downloadDeadline()
	ctx, cancel := context.WithDeadlineCause(ctx, deadline, errDeadline)
	defer cancel()
	d := &fetch{c: c, f: f, buf: make([]byte, copyBufferSize), last: -1}
	if err := d.loop(ctx); err != nil {
		if errors.Is(context.Cause(ctx), errDeadline) {
			return "", failure(wire.FailDownload, "the download did not finish by %s (%s plus the time %d bytes take at %d bytes/s)",
				deadline.Format(time.RFC3339), c.cfg.DownloadGrace, c.current().Upgrade.Size, c.cfg.MinDownloadRate)
		}
		return "", err
	}
	if err := f.Sync(); err != nil {
		return "", failure(wire.FailDownload, "sync the download file: %v", err)
	}
	return path, verifyFile(f, c.current().Upgrade, d.buf)
}

// downloadDeadline returns when the current job's download must be done:
// DownloadGrace plus the time its size takes at MinDownloadRate, from the
// first request of the job's download (recorded, so restarts keep it).
func (c *Client) downloadDeadline() time.Time {
	rec := c.current()
	began := rec.Began
	if began.IsZero() {
		began = time.Now()
		c.update(func(j *jobRecord) { j.Began = began })
	}
	need := time.Duration(float64(rec.Upgrade.Size) / float64(c.cfg.MinDownloadRate) * float64(time.Second))
	return began.Add(c.cfg.DownloadGrace + need)
}

// partPath returns where the current job's download goes: beside the
// state file or, without one, in a temporary file remembered in the record.
func (c *Client) partPath() (string, error) {
	if c.cfg.StateFile != "" {
		return c.cfg.StateFile + ".part", nil
	}
	if p := c.current().Part; p != "" {
		return p, nil
	}
	f, err := os.CreateTemp("", "otter-*.part")
	if err != nil {
		return "", err
	}
	f.Close()
	c.update(func(j *jobRecord) { j.Part = f.Name() })
	return f.Name(), nil
}

func (c *Client) removePart(rec jobRecord) {
	path := rec.Part
	if c.cfg.StateFile != "" {
		path = c.cfg.StateFile + ".part"
	}
	if path != "" {
		_ = os.Remove(path)
	}
}

// fetch is one download in progress.
type fetch struct {
	c    *Client
	f    *os.File
	buf  []byte
	last int       // last percent reported, -1 before the first report
	at   time.Time // when it was reported
}

// loop tries until the file is complete, backing off between tries and
// honouring Retry-After. Tries that bring new bytes reset the count of
// failures, so a flaky link still finishes a large file.
func (d *fetch) loop(ctx context.Context) error {
	failures := 0
	for {
		got, err := d.once(ctx)
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return context.Cause(ctx)
		case isPermanent(err):
			return err
		case got > 0:
			failures = 0
		default:
			failures++
		}
		if failures >= maxDownloadFailures {
			return failure(wire.FailDownload, "%d tries in a row failed; the last: %v", failures, err)
		}
		wait := d.c.bo.wait(err, failures)
		e := jobEvent(EventRetry, d.c.current().Upgrade)
		e.Delay, e.Err = wait, err
		d.c.emit(e)
		d.c.log.Info("download interrupted; resuming later", "err", err, "wait", wait)
		if err := d.c.cfg.Sleep(ctx, wait); err != nil {
			return context.Cause(ctx)
		}
	}
}

// once makes one GET, from where the file ends, and appends what arrives.
// It returns how many bytes it added.
func (d *fetch) once(ctx context.Context) (int64, error) {
	rec := d.c.current()
	size := rec.Upgrade.Size
	off, err := d.f.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, &permanentError{failure(wire.FailDownload, "download file: %v", err)}
	}
	if off > size {
		off, err = d.truncate()
		if err != nil {
			return 0, err
		}
	}
	d.progress(ctx, off, size)
	if off == size {
		return 0, nil
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	resp, err := d.c.cfg.HTTPClient.Do(d.request(ctx, rec, off))
	if err != nil {
		return 0, fmt.Errorf("download: %w", err)
	}
	defer resp.Body.Close()
	if off, err = d.accept(resp, off); err != nil {
		return 0, err
	}
	if etag := resp.Header.Get("ETag"); etag != rec.ETag {
		d.c.update(func(j *jobRecord) { j.ETag = etag })
	}
	return d.copy(ctx, cancel, resp.Body, off, size)
}

func (d *fetch) request(ctx context.Context, rec jobRecord, off int64) *http.Request {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, rec.Upgrade.URL, nil) // the URL was validated
	if off > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(off, 10)+"-")
		// A weak ETag cannot guard a range (RFC 9110 13.1.5); the hash
		// check catches a file that changed anyway.
		if rec.ETag != "" && !strings.HasPrefix(rec.ETag, "W/") {
			req.Header.Set("If-Range", rec.ETag)
		}
	}
	return req
}

// accept checks the status of a download response and returns the offset
// its body starts at.
func (d *fetch) accept(resp *http.Response, off int64) (int64, error) {
	switch code := resp.StatusCode; {
	case code == http.StatusOK: // whole file: the server ignored the range or the file changed
		return d.truncate()
	case code == http.StatusPartialContent:
		if start, ok := rangeStart(resp.Header.Get("Content-Range")); !ok || start != off {
			if _, err := d.truncate(); err != nil {
				return 0, err
			}
			return 0, fmt.Errorf("download: asked for bytes from %d, got Content-Range %q; starting over", off, resp.Header.Get("Content-Range"))
		}
		return off, nil
	case code == http.StatusRequestedRangeNotSatisfiable:
		if _, err := d.truncate(); err != nil {
			return 0, err
		}
		return 0, errors.New("download: the server refused the range; starting over")
	case code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable:
		return 0, &RetryAfterError{Status: code, After: retryAfter(resp.Header, time.Now())}
	case code >= 500:
		return 0, fmt.Errorf("download: HTTP %d", code)
	default:
		return 0, &permanentError{failure(wire.FailDownload, "HTTP %d %s from the download URL (expired or revoked?)", code, http.StatusText(code))}
	}
}

func (d *fetch) truncate() (int64, error) {
	if err := d.f.Truncate(0); err != nil {
		return 0, &permanentError{failure(wire.FailDownload, "truncate the download file: %v", err)}
	}
	_, err := d.f.Seek(0, io.SeekStart)
	return 0, err
}

// rangeStart reads the first byte position of "bytes first-last/total".
func rangeStart(cr string) (int64, bool) {
	rest, ok := strings.CutPrefix(cr, "bytes ")
	if !ok {
		return 0, false
	}
	first, _, ok := strings.Cut(rest, "-")
	n, err := strconv.ParseInt(first, 10, 64)
	return n, ok && err == nil
}

// copy appends body to the file from off. A watchdog cancels the request
// when a StallTimeout window brings fewer bytes than MinDownloadRate asks
// (a dead link, or a trickle), so that it is resumed instead of waited on
// forever.
func (d *fetch) copy(ctx context.Context, cancel context.CancelCauseFunc, body io.Reader, off, size int64) (int64, error) {
	w := d.c.watchRate(cancel)
	defer w.stop()
	var added int64
	for {
		n, rerr := body.Read(d.buf)
		w.got.Add(int64(n))
		if off+added+int64(n) > size {
			return added, &permanentError{failure(wire.FailVerify, "the server sent more than the %d bytes the upgrade announced", size)}
		}
		if _, err := d.f.Write(d.buf[:n]); err != nil {
			return added, &permanentError{failure(wire.FailDownload, "write the download file: %v", err)}
		}
		added += int64(n)
		d.progress(ctx, off+added, size)
		switch {
		case rerr == io.EOF && off+added == size:
			return added, nil
		case rerr == io.EOF:
			return added, fmt.Errorf("download: the connection ended at byte %d of %d", off+added, size)
		case rerr != nil && errors.Is(context.Cause(ctx), errTooSlow):
			return added, fmt.Errorf("download: fewer than %d bytes in %s (minimum %d bytes/s)", w.need, d.c.cfg.StallTimeout, d.c.cfg.MinDownloadRate)
		case rerr != nil:
			return added, fmt.Errorf("download: %w", rerr)
		}
	}
}

// rateWatch checks, every StallTimeout, that the window brought at least
// need bytes.
type rateWatch struct {
	got   atomic.Int64
	need  int64
	timer *time.Timer
}

func (c *Client) watchRate(cancel context.CancelCauseFunc) *rateWatch {
	window := c.cfg.StallTimeout
	w := &rateWatch{need: max(1, int64(float64(c.cfg.MinDownloadRate)*window.Seconds()))}
	// Armed after the assignment, so the callback always sees w.timer.
	w.timer = time.AfterFunc(time.Duration(math.MaxInt64), func() {
		if w.got.Swap(0) < w.need {
			cancel(errTooSlow)
			return
		}
		w.timer.Reset(window)
	})
	w.timer.Reset(window)
	return w
}

func (w *rateWatch) stop() { w.timer.Stop() }

// progress reports the download as docs/protocol.md section 4.4 says: at
// the start, then when the percent's tens digit has risen and
// ProgressEvery has passed since the last report; 100 is left to the
// "downloaded" report. The first report is sent reliably: it tells the
// server the device has the job.
func (d *fetch) progress(ctx context.Context, n, size int64) {
	pct := int(n * 100 / size)
	if pct >= 100 || (d.last >= 0 && pct/10 <= d.last/10) {
		return
	}
	first := d.last < 0
	now := time.Now()
	if !first && now.Sub(d.at) < d.c.cfg.ProgressEvery {
		return
	}
	d.last, d.at = pct, now
	up := d.c.current().Upgrade
	d.c.report(ctx, wire.Progress{Job: up.Job, Attempt: up.Attempt, State: wire.StateDownloading, Percent: pct}, first)
}

// verifyFile checks the downloaded file against the size and SHA-256 of
// the signed manifest.
func verifyFile(f *os.File, up wire.Upgrade, buf []byte) error {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return failure(wire.FailDownload, "download file: %v", err)
	}
	h := sha256.New()
	n, err := io.CopyBuffer(h, struct{ io.Reader }{f}, buf) // the wrapper makes CopyBuffer use buf
	if err != nil {
		return failure(wire.FailDownload, "read the download file: %v", err)
	}
	if n != up.Size {
		return failure(wire.FailVerify, "the file has %d bytes; the signed manifest says %d", n, up.Size)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); sum != up.SHA256 {
		return failure(wire.FailVerify, "the SHA-256 of the file is %s; the signed manifest says %s", sum, up.SHA256)
	}
	return nil
}
