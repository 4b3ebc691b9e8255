package metrics

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestReadProcessOfThisProcess(t *testing.T) {
	p, err := ReadProcess("/proc")
	if err != nil {
		t.Fatal(err)
	}
	now := float64(time.Now().Unix())
	if p.ResidentBytes < 1<<20 || p.VirtualBytes < p.ResidentBytes || p.OpenFDs < 3 || p.Threads < 1 ||
		p.StartTime > now+1 || p.StartTime < now-3600 || p.CPUSeconds < 0 {
		t.Fatalf("implausible %+v (now %v)", p, now)
	}
}

func TestReadProcessFixture(t *testing.T) {
	root := t.TempDir()
	write := func(name, s string) {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A command name with spaces and parentheses; utime 250, stime 50 ticks,
	// 7 threads, started 1000 ticks after boot, 10 MB virtual, 1000 pages resident.
	write("self/stat", "4242 (app (x) connect) S 1 4242 4242 0 -1 4194560 1 0 0 0 250 50 0 0 20 0 7 0 1000 10000000 1000 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n")
	write("stat", "cpu  1 2 3\nbtime 1700000000\nprocesses 9\n")
	write("self/limits", "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 4096                 files\n")
	write("self/fd/0", "")
	write("self/fd/1", "")
	p, err := ReadProcess(root)
	if err != nil {
		t.Fatal(err)
	}
	want := Process{CPUSeconds: 3, ResidentBytes: 1000 * uint64(os.Getpagesize()), VirtualBytes: 10000000,
		StartTime: 1700000010, OpenFDs: 2, MaxFDs: 1024, Threads: 7}
	if p != want {
		t.Fatalf("got %+v\nwant %+v", p, want)
	}
	write("self/stat", "4242 (x) S 1 2\n")
	if _, err := ReadProcess(root); err == nil || !strings.Contains(err.Error(), "fields after the command name") {
		t.Fatalf("short stat: %v", err)
	}
	write("self/stat", "4242 x S\n")
	if _, err := ReadProcess(root); err == nil || !strings.Contains(err.Error(), "no ')'") {
		t.Fatalf("no parenthesis: %v", err)
	}
}

func FuzzParseStat(f *testing.F) {
	f.Add([]byte("1 (a) S 1 1 1 0 -1 0 0 0 0 0 5 6 0 0 20 0 1 0 100 1000 10 0"))
	f.Add([]byte("1 (a b)) S"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = parseStat(b)
		_, _ = parseBootTime(b)
		_ = parseMaxOpenFiles(b)
	})
}
