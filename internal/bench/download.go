package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/otter-ota/otter/client"
	"github.com/otter-ota/otter/sdk/wire"
)

// DownloadConfig describes a download benchmark: one firmware file served
// by otter through its signed URL and by nginx as a static file, both
// loaded by wrk in alternating rounds.
type DownloadConfig struct {
	Server ServerOptions
	// FileSize is the size of the firmware file in bytes.
	FileSize int64
	// Rounds is the number of wrk runs against each server.
	Rounds int
	// Duration, Connections and Threads are wrk's -d, -c and -t.
	Duration    time.Duration
	Connections int
	Threads     int
	// Progress, when set, receives a line about each stage.
	Progress io.Writer
}

// DownloadReport is what a download benchmark measured.
type DownloadReport struct {
	FileSize       int64  `json:"file_size_bytes"`
	Database       string `json:"database"`
	SeparateServer bool   `json:"separate_server"`
	// Listener is the otter listener that served the downloads: "http"
	// (net/http, --http) or "download-http" (fasthttp, --download-http).
	Listener     string `json:"listener"`
	NginxVersion string `json:"nginx_version"`
	Wrk          string `json:"wrk"`
	// Rounds holds each round's figures, otter's run first.
	Rounds []DownloadRound `json:"rounds"`
	// Otter and Nginx are the means over the rounds.
	Otter WrkResult `json:"otter"`
	Nginx WrkResult `json:"nginx"`
	// Ratio is otter's mean transfer rate over nginx's.
	Ratio float64 `json:"ratio"`
	// OtterCPU and NginxCPU are the CPU time each server's processes used
	// during its rounds; OtterCPUPerRequest and NginxCPUPerRequest divide
	// them by the requests served. Unlike the rates, they do not depend
	// on what else this machine runs.
	OtterCPU           time.Duration `json:"otter_cpu_ns"`
	NginxCPU           time.Duration `json:"nginx_cpu_ns"`
	OtterCPUPerRequest time.Duration `json:"otter_cpu_per_request_ns"`
	NginxCPUPerRequest time.Duration `json:"nginx_cpu_per_request_ns"`
	// Load is the load average of this machine at the end (uptime).
	Load string `json:"load_average"`
}

// DownloadRound is one round: wrk against otter, then against nginx.
type DownloadRound struct {
	Otter WrkResult `json:"otter"`
	Nginx WrkResult `json:"nginx"`
}

// RunDownload starts otter and nginx, serves the same firmware file from
// both and compares their throughput under wrk.
func RunDownload(ctx context.Context, cfg DownloadConfig) (*DownloadReport, error) {
	if cfg.FileSize <= 0 || cfg.Rounds <= 0 || cfg.Duration <= 0 || cfg.Connections <= 0 || cfg.Threads <= 0 {
		return nil, errors.New("bench: the download benchmark needs a file of at least one byte, one round, a duration, a connection and a thread")
	}
	tools, err := findDownloadTools()
	if err != nil {
		return nil, err
	}
	image := make([]byte, cfg.FileSize)
	_, _ = rand.Read(image)
	ng, err := startNginx(ctx, tools.nginx, image)
	if err != nil {
		return nil, err
	}
	defer ng.close()
	r, err := newRig(ctx, cfg.Server, 0, "", cfg.Progress)
	if err != nil {
		return nil, err
	}
	defer r.close()
	otterURL, err := r.downloadURL(ctx, image)
	if err != nil {
		return nil, err
	}
	for _, u := range []string{otterURL, ng.url} {
		if err := checkDownload(ctx, u, image); err != nil {
			return nil, err
		}
	}
	rep := &DownloadReport{
		FileSize: cfg.FileSize, Database: dbKind(cfg.Server.DBURL), SeparateServer: r.srv.Separate,
		NginxVersion: tools.nginxVersion, Wrk: tools.wrk, Listener: "http",
	}
	if cfg.Server.DownloadHTTP {
		rep.Listener = "download-http"
	}
	w := wrk{path: tools.wrk, duration: cfg.Duration, conns: cfg.Connections, threads: cfg.Threads}
	if err := r.downloadRounds(ctx, cfg, w, otterURL, ng, rep); err != nil {
		return nil, err
	}
	rep.summarize()
	rep.Load = loadAverage()
	return rep, nil
}

// downloadRounds runs wrk against otter and nginx in turn, cfg.Rounds
// times, and adds up the CPU time each spent.
func (r *rig) downloadRounds(ctx context.Context, cfg DownloadConfig, w wrk, otterURL string, ng *nginxServer, rep *DownloadReport) error {
	otterCPU := func() (time.Duration, error) {
		u, err := r.srv.Usage()
		return u.CPU, err
	}
	for i := range cfg.Rounds {
		var round DownloadRound
		var err error
		if round.Otter, err = measure(ctx, w, otterURL, otterCPU, &rep.OtterCPU); err != nil {
			return fmt.Errorf("wrk against otter: %w", err)
		}
		if round.Nginx, err = measure(ctx, w, ng.url, ng.cpu, &rep.NginxCPU); err != nil {
			return fmt.Errorf("wrk against nginx: %w", err)
		}
		r.say("round %d: otter %.0f MiB/s (%.0f requests/s), nginx %.0f MiB/s (%.0f requests/s)", i+1,
			round.Otter.MiBPerSecond(), round.Otter.RequestsPerSecond, round.Nginx.MiBPerSecond(), round.Nginx.RequestsPerSecond)
		rep.Rounds = append(rep.Rounds, round)
	}
	return nil
}

// measure runs wrk against url and adds the CPU time the server used
// meanwhile to total.
func measure(ctx context.Context, w wrk, url string, cpu func() (time.Duration, error), total *time.Duration) (WrkResult, error) {
	before, err := cpu()
	if err != nil {
		return WrkResult{}, err
	}
	res, err := w.run(ctx, url)
	if err != nil {
		return res, err
	}
	after, err := cpu()
	*total += after - before
	return res, err
}

func (rep *DownloadReport) summarize() {
	n := float64(len(rep.Rounds))
	for _, round := range rep.Rounds {
		rep.Otter.RequestsPerSecond += round.Otter.RequestsPerSecond / n
		rep.Otter.BytesPerSecond += round.Otter.BytesPerSecond / n
		rep.Nginx.RequestsPerSecond += round.Nginx.RequestsPerSecond / n
		rep.Nginx.BytesPerSecond += round.Nginx.BytesPerSecond / n
	}
	var otterRequests, nginxRequests int64
	for _, round := range rep.Rounds {
		otterRequests += round.Otter.Requests
		nginxRequests += round.Nginx.Requests
	}
	rep.OtterCPUPerRequest = rep.OtterCPU / time.Duration(max(otterRequests, 1))
	rep.NginxCPUPerRequest = rep.NginxCPU / time.Duration(max(nginxRequests, 1))
	if rep.Nginx.BytesPerSecond > 0 {
		rep.Ratio = rep.Otter.BytesPerSecond / rep.Nginx.BytesPerSecond
	}
}

// downloadURL uploads image as a firmware and gets its signed URL as a
// device does in request mode: the device reports its version over the
// HTTP device API, a request task takes it, and the device's request is
// answered with an offer that carries the URL.
func (r *rig) downloadURL(ctx context.Context, image []byte) (string, error) {
	r.say("uploading a firmware of %d bytes and asking for its download URL", len(image))
	dev, err := r.api.CreateDevice(ctx, benchProduct, client.DeviceCreate{Key: "downloader"})
	if err != nil {
		return "", fmt.Errorf("create the device: %w", err)
	}
	fw, err := r.api.UploadFirmware(ctx, client.FirmwareUpload{Product: benchProduct, Version: "2.0.0", Size: int64(len(image))}, bytes.NewReader(image))
	if err != nil {
		return "", fmt.Errorf("upload the firmware: %w", err)
	}
	call := func(m wire.Message) (*http.Response, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.srv.HTTPURL+wire.HTTPPath(m.Kind()), bytes.NewReader(wire.Encode(m)))
		if err != nil {
			return nil, err
		}
		req.SetBasicAuth(wire.Username(benchProduct, dev.Key), dev.Secret)
		req.Header.Set("Content-Type", wire.ContentType)
		return http.DefaultClient.Do(req)
	}
	resp, err := call(wire.Inform{Modules: map[string]string{"default": "1.0.0"}})
	if err != nil {
		return "", fmt.Errorf("inform: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return "", fmt.Errorf("inform: %s", resp.Status)
	}
	if _, err := r.api.CreateTask(ctx, client.TaskCreate{Name: "bench-download", FirmwareID: fw.ID, Mode: client.ModeRequest,
		Target: client.Target{Devices: []string{dev.Key}}}); err != nil {
		return "", fmt.Errorf("create the task: %w", err)
	}
	// The engine starts the task's job in the background: until then the
	// request is answered without an offer.
	for deadline := time.Now().Add(30 * time.Second); ; {
		resp, err = call(wire.Request{Module: "default", Version: "1.0.0"})
		if err != nil {
			return "", fmt.Errorf("request: %w", err)
		}
		var up wire.Upgrade
		err = json.NewDecoder(resp.Body).Decode(&up)
		resp.Body.Close()
		if err == nil && resp.StatusCode == http.StatusOK && up.URL != "" {
			return up.URL, nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("request: %s, no offer with a URL after 30 s (%v)", resp.Status, err)
		}
		if err := pause(ctx, 50*time.Millisecond); err != nil {
			return "", err
		}
	}
}

// checkDownload fetches u once and compares the answer with image, so that
// wrk measures the file and not an error page.
func checkDownload(ctx context.Context, u string, image []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("check the download %s: %w", u, err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("check the download %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK || !bytes.Equal(got, image) {
		return fmt.Errorf("check the download %s: %s with %d bytes, want 200 with the %d bytes uploaded", u, resp.Status, len(got), len(image))
	}
	return nil
}

// loadAverage is the 1, 5 and 15 minute load averages of this machine.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
