package devicehttp

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// contentRangeRE is a valid Content-Range of a 206 answer: first <= last
// < size, checked below.
var contentRangeRE = regexp.MustCompile(`^bytes (\d+)-(\d+)/(\d+)$`)

// FuzzDropEmptySuffixRanges serves arbitrary Range headers the way a
// download does: never a panic, and a 206 answer of one range always has a
// Content-Range that RFC 9110 allows (first <= last < size) and the bytes
// it names.
func FuzzDropEmptySuffixRanges(f *testing.F) {
	for _, s := range []string{"bytes=-0", "bytes=-0,0-1", "bytes=0-", "bytes=-000", "bytes=5-2", "bytes= -0 , -1",
		"bytes=", "bytes=,", "items=-0", "bytes=-1,-0", "bytes=99-", "bytes=- +0"} {
		f.Add(s)
	}
	content := "0123456789abcdefghij"
	f.Fuzz(func(t *testing.T, rng string) {
		r := httptest.NewRequest(http.MethodGet, "/dl/1", nil)
		r.Header.Set("Range", rng)
		dropEmptySuffixRanges(r, int64(len(content)))
		w := httptest.NewRecorder()
		http.ServeContent(w, r, "", time.Time{}, strings.NewReader(content))
		if w.Code != http.StatusPartialContent || strings.HasPrefix(w.Header().Get("Content-Type"), "multipart/") {
			return
		}
		m := contentRangeRE.FindStringSubmatch(w.Header().Get("Content-Range"))
		if m == nil {
			t.Fatalf("Range %q: 206 with Content-Range %q", rng, w.Header().Get("Content-Range"))
		}
		first, _ := strconv.Atoi(m[1])
		last, _ := strconv.Atoi(m[2])
		size, _ := strconv.Atoi(m[3])
		if first > last || last >= size || size != len(content) || w.Body.String() != content[first:last+1] {
			t.Fatalf("Range %q: 206 with Content-Range %q and body %q", rng, m[0], w.Body.String())
		}
	})
}
