package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// Metrics is one scrape of a server's /metrics: each series' value by
// metric name, summed over the labels (counters of kinds add up to the
// metric's total), and each labelled series by its name and labels as
// exposed, e.g. `otter_download_requests_total{status="503"}`.
type Metrics map[string]float64

// Scrape reads baseURL/metrics in the Prometheus text format.
func Scrape(ctx context.Context, hc *http.Client, baseURL string) (Metrics, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(baseURL, "/")+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("read the server's metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("read the server's metrics: %s", resp.Status)
	}
	return ParseMetrics(resp.Body)
}

// ParseMetrics reads the Prometheus text exposition format (version
// 0.0.4): comment lines are skipped, every sample line adds its value to
// its metric name. A histogram's _sum, _count and _bucket series are names
// of their own. It is a parser for the few counters the bench reads, so that
// the bench needs no module beyond client_golang's own.
func ParseMetrics(r io.Reader) (Metrics, error) {
	m := Metrics{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		name, labels, value, err := parseSample(line)
		if err != nil {
			return nil, fmt.Errorf("metrics line %d: %w", n, err)
		}
		m[name] += value
		if labels != "" {
			m[name+labels] += value
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read metrics: %w", err)
	}
	return m, nil
}

// parseSample splits `name{labels} value [timestamp]`; labels keeps its
// braces and is empty for a series without labels.
func parseSample(line string) (name, labels string, v float64, err error) {
	end := strings.IndexAny(line, "{ \t")
	if end <= 0 {
		return "", "", 0, fmt.Errorf("%.60q: want a metric name and a value", line)
	}
	name, rest := line[:end], line[end:]
	if rest[0] == '{' {
		stop, err := labelsEnd(rest)
		if err != nil {
			return "", "", 0, fmt.Errorf("%.60q: %w", line, err)
		}
		labels, rest = rest[:stop+1], rest[stop+1:]
	}
	f := strings.Fields(rest)
	if len(f) < 1 || len(f) > 2 {
		return "", "", 0, fmt.Errorf("%.60q: want a value and an optional timestamp after the name", line)
	}
	v, err = strconv.ParseFloat(f[0], 64)
	if err != nil {
		return "", "", 0, fmt.Errorf("%.60q: value: %w", line, err)
	}
	return name, labels, v, nil
}

// labelsEnd returns the index of the '}' that closes the label set opening
// s, skipping quoted label values (which may hold '}' and escaped quotes).
func labelsEnd(s string) (int, error) {
	quoted := false
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case quoted && c == '\\':
			i++
		case c == '"':
			quoted = !quoted
		case !quoted && c == '}':
			return i, nil
		}
	}
	return 0, fmt.Errorf("labels not closed")
}

// Sum adds the values of the named metrics.
func (m Metrics) Sum(names ...string) float64 {
	var total float64
	for _, n := range names {
		total += m[n]
	}
	return total
}
