package sim

import (
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/otter-ota/otter/sdk/device"
)

// newSignHash returns the digest an EnOS upgrade command's signMethod
// names: md5, sha1 or sha256, also under the SDKs' hmac aliases (which
// are plain digests all the same).
func newSignHash(method string) (hash.Hash, error) {
	switch strings.TrimPrefix(strings.ToLower(method), "hmac") {
	case "md5":
		return md5.New(), nil
	case "sha1":
		return sha1.New(), nil
	case "sha256":
		return sha256.New(), nil
	}
	return nil, fmt.Errorf("signMethod %q: want md5, sha1 or sha256", method)
}

// maxFetchFailures is how many tries in a row may bring no new byte
// before a download fails, as in the device SDK.
const maxFetchFailures = 8

var errTooLong = errors.New("the server sent more bytes than the command announced")

// fetch downloads url into h, which a simulated device keeps instead of
// the file, and returns the bytes read. An interrupted download resumes
// with a Range request from where it stopped; 429 and 503 wait as long as
// Retry-After says. size, when positive, bounds the file.
func fetch(ctx context.Context, hc *http.Client, url string, size int64, h hash.Hash, backoff func(int) time.Duration) (int64, error) {
	var off int64
	for failures := 0; ; {
		added, err := fetchOnce(ctx, hc, url, size, off, h)
		off += added
		switch {
		case err == nil:
			return off, nil
		case ctx.Err() != nil || errors.Is(err, errTooLong):
			return off, err
		case errors.Is(err, errRestart):
			h.Reset()
			off = 0
		}
		var permanent *fetchStatusError
		if errors.As(err, &permanent) {
			return off, err
		}
		if added > 0 {
			failures = 0
		} else if failures++; failures >= maxFetchFailures {
			return off, fmt.Errorf("%d tries in a row failed; the last: %w", failures, err)
		}
		wait := backoff(failures + 1)
		var ra *device.RetryAfterError
		if errors.As(err, &ra) && ra.After > 0 {
			// At least what the server asked, plus a little so that the
			// devices it turned away do not all return in one second.
			wait = ra.After + min(wait, ra.After/10)
		}
		if !sleep(ctx, wait) {
			return off, ctx.Err()
		}
	}
}

// errRestart says the server sent the whole file, or refused the range:
// what was read so far is dropped.
var errRestart = errors.New("the server did not resume the download; starting over")

// fetchStatusError is a failure no retry will change: a bad URL, or an
// answer such as 403 (an expired URL) or 404.
type fetchStatusError struct{ err error }

func (e *fetchStatusError) Error() string { return e.err.Error() }
func (e *fetchStatusError) Unwrap() error { return e.err }

// fetchOnce makes one GET from off and feeds what arrives to h.
func fetchOnce(ctx context.Context, hc *http.Client, url string, size, off int64, h hash.Hash) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, &fetchStatusError{fmt.Errorf("download: %w", err)}
	}
	if off > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(off, 10)+"-")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("download: %w", err)
	}
	defer resp.Body.Close()
	switch code := resp.StatusCode; {
	case code == http.StatusOK && off > 0, code == http.StatusRequestedRangeNotSatisfiable:
		// Whole file again (or no range at all): start over, reading this
		// answer's body on the next try would need a fresh hash first.
		return 0, errRestart
	case code == http.StatusPartialContent && !strings.HasPrefix(resp.Header.Get("Content-Range"), "bytes "+strconv.FormatInt(off, 10)+"-"):
		return 0, errRestart
	case code == http.StatusOK, code == http.StatusPartialContent:
	case code == http.StatusTooManyRequests, code == http.StatusServiceUnavailable:
		s, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
		return 0, &device.RetryAfterError{Status: code, After: time.Duration(s) * time.Second}
	case code >= 500:
		return 0, fmt.Errorf("download: HTTP %d", code)
	default:
		return 0, &fetchStatusError{fmt.Errorf("HTTP %d %s from the download URL", code, http.StatusText(code))}
	}
	var body io.Reader = resp.Body
	if size > 0 {
		body = io.LimitReader(resp.Body, size-off+1)
	}
	n, err := io.Copy(h, body)
	switch {
	case size > 0 && off+n > size:
		return n, errTooLong
	case err != nil:
		return n, fmt.Errorf("download: %w", err)
	case size > 0 && off+n < size:
		return n, fmt.Errorf("download: the connection ended at byte %d of %d", off+n, size)
	}
	return n, nil
}
