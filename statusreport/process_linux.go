package statusreport

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// readProcess reads the resident set (/proc/self/statm) and the CPU time
// used (getrusage). A figure that cannot be read is 0.
func readProcess() Process {
	var p Process
	if b, err := os.ReadFile("/proc/self/statm"); err == nil {
		if f := bytes.Fields(b); len(f) >= 2 {
			if pages, err := strconv.ParseUint(string(f[1]), 10, 64); err == nil {
				p.RSSBytes = pages * uint64(os.Getpagesize())
			}
		}
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		p.CPUSeconds = math.Round((tvSeconds(ru.Utime)+tvSeconds(ru.Stime))*1000) / 1000 // ms: no float noise in the JSON
	}
	return p
}

func tvSeconds(tv syscall.Timeval) float64 {
	return float64(tv.Sec) + float64(tv.Usec)/1e6
}

// readDatabase sums the database file and its -wal and -shm companions and
// reads the free space of their file system.
func readDatabase(path string) Database {
	var d Database
	for _, f := range []string{path, path + "-wal", path + "-shm"} {
		if st, err := os.Stat(f); err == nil {
			d.SizeBytes += uint64(st.Size())
		}
	}
	var fs syscall.Statfs_t
	if syscall.Statfs(filepath.Dir(path), &fs) == nil {
		d.FreeBytes = uint64(fs.Bavail) * uint64(fs.Bsize)
	}
	return d
}
