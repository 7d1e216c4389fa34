// Package pgtest runs a private PostgreSQL server for tests that must stop
// and start it (a restart, an outage), which the machine's shared server
// must never be: initdb into a temporary folder, then the postgres server
// as a child process on a free loopback port, stopped when the test ends.
//
// PostgreSQL refuses to run as root; a test run as root runs it as the
// "postgres" user (Debian's package makes it), whose folder it is.
//
// Where PostgreSQL's programs are not installed the test is skipped, except
// under CI=true, where it fails: CI must run these tests.
package pgtest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Server is a running private PostgreSQL.
type Server struct {
	// URL is the "postgres" database as the superuser "postgres", without
	// password (trust on loopback only).
	URL  string
	Addr string // 127.0.0.1:port

	bin, data string
	port      int
	cred      *syscall.Credential
	mu        sync.Mutex // guards cmd and done across Restart
	cmd       *exec.Cmd
	done      chan struct{}
	log       *os.File
}

// Start makes a fresh database cluster and starts its server.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := findBin(t)
	cred, uid, gid := runAs(t)
	// Not t.TempDir: its parents are private to root, and the server may
	// run as another user.
	dir, err := os.MkdirTemp("", "otter-pgtest-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatalf("pgtest: hand %s to the server's user: %v", dir, err)
	}
	s := &Server{bin: bin, data: filepath.Join(dir, "data"), cred: cred}
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", s.data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync", "--no-instructions")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
	if out, err := initdb.CombinedOutput(); err != nil {
		fatal(t, fmt.Sprintf("pgtest: initdb: %v\n%s", err, out))
	}
	if s.log, err = os.Create(filepath.Join(dir, "server.log")); err != nil {
		t.Fatal(err)
	}
	// A port picked here may be taken before the server binds it: try again.
	for attempt := 0; ; attempt++ {
		if s.port, err = freePort(); err == nil {
			err = s.run()
		}
		if err == nil {
			break
		}
		if attempt == 2 {
			fatal(t, fmt.Sprintf("pgtest: %v\n%s", err, s.Log()))
		}
	}
	s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
	s.URL = "postgres://postgres@" + s.Addr + "/postgres?sslmode=disable"
	t.Cleanup(func() {
		s.stop(syscall.SIGINT)
		if t.Failed() {
			t.Logf("PostgreSQL's log:\n%s", s.Log())
		}
		s.log.Close()
	})
	return s
}

// Restart stops the server with a fast shutdown (SIGINT: it ends every
// session, as an operator's `pg_ctl restart -m fast` does) and starts it
// again on the same port and data.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	s.Resume(t)
}

// Stop shuts the server down fast; its clients see the connection end.
func (s *Server) Stop() { s.stop(syscall.SIGINT) }

// Resume starts a stopped server again.
func (s *Server) Resume(t testing.TB) {
	t.Helper()
	if err := s.run(); err != nil {
		t.Fatalf("pgtest: start PostgreSQL again: %v\n%s", err, s.Log())
	}
}

// Log returns what the server has logged so far.
func (s *Server) Log() string {
	b, err := os.ReadFile(s.log.Name())
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// run starts the server in the foreground and waits until it accepts
// connections. fsync is off: the tests restart the server, they never
// crash the machine.
func (s *Server) run() error {
	cmd := exec.Command(filepath.Join(s.bin, "postgres"), "-D", s.data, "-p", strconv.Itoa(s.port),
		"-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=", "-c", "fsync=off",
		"-c", "max_connections=200")
	// A test binary that dies (a timeout's panic, a kill) takes the server
	// with it (SIGQUIT: immediate shutdown) instead of leaving it running.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Pdeathsig: syscall.SIGQUIT}
	cmd.Stdout, cmd.Stderr = s.log, s.log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()
	if err := s.awaitReady(done, 30*time.Second); err != nil {
		s.stop(syscall.SIGKILL)
		return err
	}
	return nil
}

// awaitReady waits until pg_isready says the server accepts connections
// (listening is not enough: it refuses them while it starts up).
func (s *Server) awaitReady(exited <-chan struct{}, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		err := exec.Command(filepath.Join(s.bin, "pg_isready"), "-q", "-h", "127.0.0.1", "-p", strconv.Itoa(s.port)).Run()
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			return errors.New("postgres exited at start")
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("postgres not ready after %s: %w", limit, err)
		}
	}
}

func (s *Server) stop(sig syscall.Signal) {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// findBin returns the folder of initdb, postgres and pg_isready: on PATH, or Debian's
// /usr/lib/postgresql/VERSION/bin (the newest).
func findBin(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("initdb"); err == nil {
		// Debian links some of the programs into /usr/local/bin, not all.
		if real, err := filepath.EvalSymlinks(p); err == nil {
			return filepath.Dir(real)
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d
		}
	}
	fatal(t, "pgtest: PostgreSQL's initdb is not installed (apt-get install postgresql)")
	return ""
}

func version(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

// runAs returns who runs the server: this process's user, or "postgres"
// when this process is root.
func runAs(t testing.TB) (*syscall.Credential, int, int) {
	t.Helper()
	if os.Geteuid() != 0 {
		return nil, os.Geteuid(), os.Getegid()
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		fatal(t, "pgtest: PostgreSQL refuses to run as root, and there is no postgres user to run it as: "+err.Error())
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, uid, gid
}

func fatal(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
