package metrics

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of /proc's CPU times: 100 on every Linux
// architecture app-connect runs on (the kernel fixes it for user space).
const clockTicks = 100

// Process is the standard process_* metrics of one process, read from /proc.
type Process struct {
	CPUSeconds    float64 // user + system
	ResidentBytes uint64
	VirtualBytes  uint64
	StartTime     float64 // Unix time, seconds
	OpenFDs       int
	MaxFDs        uint64 // soft limit; 0 when unlimited or unknown
	Threads       int
}

// ReadProcess reads the process_* figures of this process from procRoot
// (normally "/proc").
func ReadProcess(procRoot string) (Process, error) {
	var p Process
	stat, err := os.ReadFile(filepath.Join(procRoot, "self", "stat"))
	if err != nil {
		return p, fmt.Errorf("process metrics: %w", err)
	}
	st, err := parseStat(stat)
	if err != nil {
		return p, fmt.Errorf("process metrics: %s: %w", filepath.Join(procRoot, "self", "stat"), err)
	}
	sys, err := os.ReadFile(filepath.Join(procRoot, "stat"))
	if err != nil {
		return p, fmt.Errorf("process metrics: %w", err)
	}
	btime, err := parseBootTime(sys)
	if err != nil {
		return p, fmt.Errorf("process metrics: %s: %w", filepath.Join(procRoot, "stat"), err)
	}
	p.CPUSeconds = float64(st.utime+st.stime) / clockTicks
	p.ResidentBytes = st.rssPages * uint64(os.Getpagesize())
	p.VirtualBytes = st.vsize
	p.StartTime = float64(btime) + float64(st.starttime)/clockTicks
	p.Threads = st.threads
	if fds, err := os.ReadDir(filepath.Join(procRoot, "self", "fd")); err == nil {
		p.OpenFDs = len(fds)
	}
	if lim, err := os.ReadFile(filepath.Join(procRoot, "self", "limits")); err == nil {
		p.MaxFDs = parseMaxOpenFiles(lim)
	}
	return p, nil
}

type procStat struct {
	utime, stime, starttime, vsize, rssPages uint64
	threads                                  int
}

// parseStat reads /proc/<pid>/stat: the command name (field 2) is in
// parentheses and may itself hold spaces and parentheses, so fields are
// counted from the last ')'.
func parseStat(b []byte) (procStat, error) {
	var s procStat
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return s, errors.New("no ')' after the command name")
	}
	f := strings.Fields(string(b[i+1:])) // f[0] is field 3 (state)
	if len(f) < 22 {
		return s, fmt.Errorf("%d fields after the command name, want at least 22", len(f))
	}
	nums := []struct {
		field int
		dst   *uint64
	}{{14, &s.utime}, {15, &s.stime}, {22, &s.starttime}, {23, &s.vsize}, {24, &s.rssPages}}
	for _, n := range nums {
		v, err := strconv.ParseUint(f[n.field-3], 10, 64)
		if err != nil {
			return s, fmt.Errorf("field %d: %w", n.field, err)
		}
		*n.dst = v
	}
	th, err := strconv.Atoi(f[20-3])
	if err != nil {
		return s, fmt.Errorf("field 20: %w", err)
	}
	s.threads = th
	return s, nil
}

// parseBootTime reads the btime line of /proc/stat.
func parseBootTime(b []byte) (uint64, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "btime "); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("btime: %w", err)
			}
			return n, nil
		}
	}
	return 0, errors.New("no btime line")
}

// parseMaxOpenFiles reads the soft "Max open files" limit of
// /proc/<pid>/limits (0 when unlimited or absent).
func parseMaxOpenFiles(b []byte) uint64 {
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Max open files"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				n, _ := strconv.ParseUint(f[0], 10, 64) // "unlimited" gives 0
				return n
			}
		}
	}
	return 0
}

// Process writes the process_* families (the names every Prometheus client
// library uses) and go_goroutines.
func (m *Writer) Process(p Process) {
	m.Single("process_cpu_seconds_total", Counter, "Total user and system CPU time spent in seconds.", p.CPUSeconds)
	m.Single("process_resident_memory_bytes", Gauge, "Resident memory size in bytes.", float64(p.ResidentBytes))
	m.Single("process_virtual_memory_bytes", Gauge, "Virtual memory size in bytes.", float64(p.VirtualBytes))
	m.Single("process_start_time_seconds", Gauge, "Start time of the process since unix epoch in seconds.", p.StartTime)
	m.Single("process_open_fds", Gauge, "Number of open file descriptors.", float64(p.OpenFDs))
	if p.MaxFDs > 0 {
		m.Single("process_max_fds", Gauge, "Maximum number of open file descriptors.", float64(p.MaxFDs))
	}
	m.Single("process_threads", Gauge, "Number of OS threads of the process.", float64(p.Threads))
	m.Single("go_goroutines", Gauge, "Number of goroutines that currently exist.", float64(runtime.NumGoroutine()))
}
