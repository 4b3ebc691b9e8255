//go:build !linux

package statusreport

import "os"

// readProcess: only Linux (the gateway) reports process figures.
func readProcess() Process { return Process{} }

// readDatabase reports the database's size; free space only on Linux.
func readDatabase(path string) Database {
	var d Database
	for _, f := range []string{path, path + "-wal", path + "-shm"} {
		if st, err := os.Stat(f); err == nil {
			d.SizeBytes += uint64(st.Size())
		}
	}
	return d
}
