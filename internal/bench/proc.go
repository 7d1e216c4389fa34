package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Usage is what one process has used, read from /proc.
type Usage struct {
	// RSS is the resident set size now (VmRSS), in bytes.
	RSS int64 `json:"rss_bytes"`
	// PeakRSS is the largest resident set size so far (VmHWM), in bytes.
	PeakRSS int64 `json:"peak_rss_bytes"`
	// CPU is the user plus system CPU time used so far.
	CPU time.Duration `json:"cpu_ns"`
	// FDs is the number of open file descriptors.
	FDs int `json:"fds"`
}

// clockTicks is USER_HZ, the unit of the CPU times in /proc/PID/stat. It is
// 100 on every Linux architecture Go supports; reading it for real needs
// sysconf (cgo).
const clockTicks = 100

// ReadUsage reads the memory and CPU use of process pid from /proc (Linux
// only).
func ReadUsage(pid int) (Usage, error) {
	var u Usage
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return u, fmt.Errorf("read the usage of process %d: %w", pid, err)
	}
	if u.RSS, err = statusBytes(status, "VmRSS:"); err != nil {
		return u, err
	}
	if u.PeakRSS, err = statusBytes(status, "VmHWM:"); err != nil {
		return u, err
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return u, fmt.Errorf("read the CPU time of process %d: %w", pid, err)
	}
	if u.CPU, err = statCPU(stat); err != nil {
		return u, fmt.Errorf("process %d: %w", pid, err)
	}
	if fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); err == nil {
		u.FDs = len(fds)
	}
	return u, nil
}

// statusBytes reads a "Name:   1234 kB" line of /proc/PID/status.
func statusBytes(status []byte, name string) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), name)
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("/proc status line %q: want a size in kB", sc.Text())
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc status line %q: %w", sc.Text(), err)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("/proc status has no %s line", name)
}

// statCPU reads utime and stime (fields 14 and 15) of /proc/PID/stat. The
// command name (field 2) may hold spaces and parentheses, so the fields are
// counted from its last closing parenthesis.
func statCPU(stat []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc stat %.40q: no command name", stat)
	}
	f := strings.Fields(string(stat[i+1:])) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc stat: %d fields after the command name, want at least 13", len(f))
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc stat CPU time %q: %w", s, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// RaiseFileLimit raises this process's soft limit of open files to its hard
// limit (each device connection is a file) and returns the new limit. Go
// does this at start already; doing it here keeps the bench's figure
// honest if that ever changes. Raising the hard limit needs privileges
// (CAP_SYS_RESOURCE) that the bench does not ask for.
func RaiseFileLimit() (uint64, error) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, fmt.Errorf("read the open-file limit: %w", err)
	}
	if l.Cur < l.Max {
		l.Cur = l.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
			return 0, fmt.Errorf("raise the open-file limit to %d: %w", l.Max, err)
		}
	}
	return l.Cur, nil
}

// EphemeralPorts returns how many local ports the kernel hands out to
// outgoing connections (net.ipv4.ip_local_port_range): the most
// connections one source address can open to one server address.
func EphemeralPorts() (int, error) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, fmt.Errorf("read the ephemeral port range: %w", err)
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, fmt.Errorf("ephemeral port range %q: want two numbers", b)
	}
	lo, err1 := strconv.Atoi(f[0])
	hi, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil || hi < lo {
		return 0, fmt.Errorf("ephemeral port range %q: want two increasing numbers", b)
	}
	return hi - lo + 1, nil
}
