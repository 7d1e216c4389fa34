package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// downloadTools are the programs the download benchmark runs.
type downloadTools struct {
	nginx, nginxVersion, wrk string
}

// findDownloadTools finds nginx and wrk, on PATH or where Debian puts
// them (/usr/sbin is not on every user's PATH).
func findDownloadTools() (downloadTools, error) {
	var t downloadTools
	var missing []string
	find := func(name string) string {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
		for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/usr/bin"} {
			p := filepath.Join(dir, name)
			if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
				return p
			}
		}
		missing = append(missing, name)
		return ""
	}
	t.nginx, t.wrk = find("nginx"), find("wrk")
	if len(missing) > 0 {
		return t, fmt.Errorf("the download benchmark needs %s: install with `apt-get install -y nginx wrk` (Debian, Ubuntu); it starts its own nginx on a free port and does not need nginx's service", strings.Join(missing, " and "))
	}
	out, err := exec.Command(t.nginx, "-v").CombinedOutput()
	if err != nil {
		return t, fmt.Errorf("%s -v: %w: %s", t.nginx, err, out)
	}
	t.nginxVersion = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(string(out)), "nginx version:"))
	return t, nil
}

// nginxServer is an nginx of the benchmark's own: its prefix in a
// temporary folder, in the foreground, on a free port of 127.0.0.1.
type nginxServer struct {
	url    string
	prefix string
	cmd    *exec.Cmd
	done   chan error
}

// nginxConfig is nginx as a static file server is commonly set up:
// sendfile, one worker per core, keep-alive. Access logging is off, as
// otter logs no request either.
const nginxConfig = `daemon off;
worker_processes auto;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
%[3]s
events { worker_connections 4096; }
http {
	default_type application/octet-stream;
	sendfile on;
	tcp_nopush on;
	access_log off;
	client_body_temp_path %[1]s/tmp;
	proxy_temp_path %[1]s/tmp;
	fastcgi_temp_path %[1]s/tmp;
	uwsgi_temp_path %[1]s/tmp;
	scgi_temp_path %[1]s/tmp;
	server {
		listen 127.0.0.1:%[2]d;
		root %[1]s/html;
	}
}
`

// startNginx writes image as /firmware.bin of a new nginx and starts it.
func startNginx(ctx context.Context, exe string, image []byte) (*nginxServer, error) {
	prefix, err := os.MkdirTemp("", "otter-bench-nginx-")
	if err != nil {
		return nil, fmt.Errorf("make nginx's folder: %w", err)
	}
	ng := &nginxServer{prefix: prefix}
	if err := ng.prepare(image); err != nil {
		ng.close()
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		ng.close()
		return nil, err
	}
	// Run as root, nginx's workers take the user "nobody" unless told:
	// they then need the folder readable, and are told to stay root.
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;"
	}
	conf := filepath.Join(prefix, "nginx.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, nginxConfig, prefix, port, user), 0o644); err != nil {
		ng.close()
		return nil, err
	}
	ng.cmd = exec.Command(exe, "-p", prefix, "-c", conf, "-e", filepath.Join(prefix, "error.log"))
	var stderr bytes.Buffer
	ng.cmd.Stdout, ng.cmd.Stderr = &stderr, &stderr
	// The master stops its workers on SIGTERM, also when this process dies.
	ng.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := ng.cmd.Start(); err != nil {
		ng.close()
		return nil, fmt.Errorf("start nginx: %w", err)
	}
	ng.done = make(chan error, 1)
	go func() { ng.done <- ng.cmd.Wait() }()
	ng.url = fmt.Sprintf("http://127.0.0.1:%d/firmware.bin", port)
	if err := ng.waitReady(ctx); err != nil {
		log, _ := os.ReadFile(filepath.Join(prefix, "error.log"))
		ng.close()
		return nil, fmt.Errorf("nginx did not start: %w\n%s%s", err, stderr.Bytes(), log)
	}
	return ng, nil
}

func (ng *nginxServer) prepare(image []byte) error {
	for _, dir := range []string{"html", "tmp"} {
		if err := os.Mkdir(filepath.Join(ng.prefix, dir), 0o755); err != nil {
			return fmt.Errorf("make nginx's folder: %w", err)
		}
	}
	if err := os.Chmod(ng.prefix, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(ng.prefix, "html", "firmware.bin"), image, 0o644); err != nil {
		return fmt.Errorf("write the file nginx serves: %w", err)
	}
	return nil
}

// waitReady waits until nginx answers, for at most 10 seconds.
func (ng *nginxServer) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case err := <-ng.done:
			ng.done <- err
			return fmt.Errorf("nginx exited: %v", err)
		default:
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodHead, ng.url, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = errors.New(resp.Status)
		}
		if time.Now().After(deadline) {
			return err
		}
		if err := pause(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
}

// close stops nginx (SIGQUIT: the master ends its workers) and removes
// its folder.
func (ng *nginxServer) close() {
	if ng.cmd != nil && ng.cmd.Process != nil {
		_ = ng.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-ng.done:
		case <-time.After(10 * time.Second):
			_ = ng.cmd.Process.Kill()
			<-ng.done
		}
	}
	_ = os.RemoveAll(ng.prefix)
}

// cpu is the CPU time nginx's master and workers have used.
func (ng *nginxServer) cpu() (time.Duration, error) {
	pid := ng.cmd.Process.Pid
	children, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return 0, fmt.Errorf("list nginx's workers: %w", err)
	}
	var total time.Duration
	for _, f := range append([]string{strconv.Itoa(pid)}, strings.Fields(string(children))...) {
		stat, err := os.ReadFile("/proc/" + f + "/stat")
		if err != nil {
			return 0, fmt.Errorf("read nginx's CPU time: %w", err)
		}
		d, err := statCPU(stat)
		if err != nil {
			return 0, err
		}
		total += d
	}
	return total, nil
}

// freePort asks the kernel for a free port of 127.0.0.1. Another process
// could take it before nginx binds it; nginx then fails to start, plainly.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port for nginx: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// wrk runs the HTTP load generator wrk.
type wrk struct {
	path           string
	duration       time.Duration
	conns, threads int
}

// WrkResult is what one wrk run measured.
type WrkResult struct {
	Requests          int64   `json:"requests"`
	RequestsPerSecond float64 `json:"requests_per_second"`
	// BytesPerSecond is wrk's Transfer/sec: bodies and headers.
	BytesPerSecond float64 `json:"bytes_per_second"`
}

// MiBPerSecond is BytesPerSecond in MiB.
func (r WrkResult) MiBPerSecond() float64 { return r.BytesPerSecond / (1 << 20) }

func (w wrk) run(ctx context.Context, url string) (WrkResult, error) {
	// wrk's default timeout, 2 s, is shorter than 64 connections take to
	// share out 16 MiB files on a busy machine.
	args := []string{"-c", strconv.Itoa(w.conns), "-t", strconv.Itoa(w.threads), "-d", fmt.Sprintf("%ds", max(1, int(w.duration.Round(time.Second)/time.Second))),
		"--timeout", "30s", url}
	out, err := exec.CommandContext(ctx, w.path, args...).CombinedOutput()
	if err != nil {
		return WrkResult{}, fmt.Errorf("%w: %s", err, out)
	}
	return parseWrk(string(out))
}

// parseWrk reads wrk's summary. Any non-2xx answer or socket error fails
// the run: an error page is faster than a file and would flatter it.
func parseWrk(out string) (WrkResult, error) {
	var r WrkResult
	var haveReq, haveTransfer bool
	for line := range strings.Lines(out) {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "Non-2xx or 3xx responses:"), strings.HasPrefix(line, "Socket errors:"):
			return r, fmt.Errorf("wrk saw errors (%s):\n%s", line, out)
		case strings.HasPrefix(line, "Requests/sec:"):
			v, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimPrefix(line, "Requests/sec:")), 64)
			if err != nil {
				return r, fmt.Errorf("wrk's %q: %w", line, err)
			}
			r.RequestsPerSecond, haveReq = v, true
		case strings.HasPrefix(line, "Transfer/sec:"):
			v, err := parseWrkBytes(strings.TrimSpace(strings.TrimPrefix(line, "Transfer/sec:")))
			if err != nil {
				return r, fmt.Errorf("wrk's %q: %w", line, err)
			}
			r.BytesPerSecond, haveTransfer = v, true
		case strings.Contains(line, " requests in "):
			n, err := strconv.ParseInt(strings.Fields(line)[0], 10, 64)
			if err != nil {
				return r, fmt.Errorf("wrk's %q: %w", line, err)
			}
			r.Requests = n
		}
	}
	if !haveReq || !haveTransfer || r.Requests == 0 {
		return r, fmt.Errorf("wrk's output has no Requests/sec and Transfer/sec, or no request was made:\n%s", out)
	}
	return r, nil
}

// parseWrkBytes reads a size as wrk prints it: "158.23MB", with binary
// units (wrk's KB is 1024 bytes).
func parseWrkBytes(s string) (float64, error) {
	units := []struct {
		suffix string
		scale  float64
	}{{"TB", 1 << 40}, {"GB", 1 << 30}, {"MB", 1 << 20}, {"KB", 1 << 10}, {"B", 1}}
	for _, u := range units {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			v, err := strconv.ParseFloat(num, 64)
			return v * u.scale, err
		}
	}
	v, err := strconv.ParseFloat(s, 64)
	return v, err
}
