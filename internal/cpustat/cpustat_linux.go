//go:build linux

package cpustat

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// userHZ is the unit of the CPU times in /proc/<pid>/stat: USER_HZ, which
// the kernel fixes at 100 for user space on every architecture.
const userHZ = 100

func processCPU() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, fmt.Errorf("getrusage: %w", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}

// procStat is what we read of /proc/<pid>/stat.
type procStat struct {
	comm                         string
	ppid                         int
	utime, stime, cutime, cstime int64 // in 1/userHZ s
}

// parseStat parses the contents of /proc/<pid>/stat. The command name is in
// parentheses and may itself hold spaces and parentheses, so the fields
// are counted from the last ')'.
func parseStat(b []byte) (*procStat, error) {
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return nil, fmt.Errorf("no command name in %q", b)
	}
	f := strings.Fields(string(b[end+1:]))
	// f[0] is field 3 (state) of proc(5); utime..cstime are fields 14-17.
	if len(f) < 15 {
		return nil, fmt.Errorf("%d fields after the command name, want at least 15", len(f))
	}
	st := &procStat{comm: string(b[open+1 : end])}
	var err error
	if st.ppid, err = strconv.Atoi(f[1]); err != nil {
		return nil, fmt.Errorf("ppid %q: %w", f[1], err)
	}
	for i, p := range []*int64{&st.utime, &st.stime, &st.cutime, &st.cstime} {
		if *p, err = strconv.ParseInt(f[11+i], 10, 64); err != nil {
			return nil, fmt.Errorf("field %d %q: %w", 14+i, f[11+i], err)
		}
	}
	return st, nil
}

func readStat(pid int) (*procStat, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return nil, err
	}
	st, err := parseStat(b)
	if err != nil {
		return nil, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return st, nil
}

func findServer(backendPID int) (*Server, error) {
	b, err := readStat(backendPID)
	if err != nil {
		return nil, fmt.Errorf("backend %d is not a process on this machine: %w", backendPID, err)
	}
	pm, err := readStat(b.ppid)
	if err != nil {
		return nil, fmt.Errorf("parent %d of backend %d: %w", b.ppid, backendPID, err)
	}
	// A backend's command name is "postgres" (its title is set in
	// cmdline, not comm); so is the postmaster's.
	if b.comm != "postgres" || pm.comm != "postgres" {
		return nil, fmt.Errorf("process %d (%s) with parent %d (%s) is not a PostgreSQL backend", backendPID, b.comm, b.ppid, pm.comm)
	}
	return &Server{postmaster: b.ppid}, nil
}

func serverCPU(postmaster int) (time.Duration, error) {
	pm, err := readStat(postmaster)
	if err != nil {
		return 0, fmt.Errorf("postmaster %d: %w", postmaster, err)
	}
	ticks := pm.utime + pm.stime + pm.cutime + pm.cstime
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, fmt.Errorf("list processes: %w", err)
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := readStat(pid)
		if err != nil || st.ppid != postmaster {
			continue // gone meanwhile, or not the server's
		}
		// A child's own children (none for a backend) are in its cutime.
		ticks += st.utime + st.stime + st.cutime + st.cstime
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}
