package main

import (
	"github.com/lorawan-gateway/app-connect/internal/testpeer"
	"os"
	"testing"
)

func TestIsTotals(t *testing.T) {
	for line, want := range map[string]bool{
		"sent 20000, delivered 19990, duplicates 3, missing 10":        true,
		"sent 0, delivered 0, duplicates 0, missing 0":                 true,
		"t=3s sent 130, delivered 130, duplicates 0, missing-so-far 0": false,
		"publishing: 20 devices, until stopped":                        false,
	} {
		if got := isTotals(line); got != want {
			t.Errorf("isTotals(%q) = %v, want %v", line, got, want)
		}
	}
}

func TestProcFigures(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		testpeer.Missing(t, "/proc (the benchmark reads CPU and RSS figures from it)")
	}
	cpu, err := cpuSeconds(os.Getpid())
	if err != nil || cpu < 0 {
		t.Errorf("cpuSeconds = %v, %v", cpu, err)
	}
	rss, err := peakRSS(os.Getpid())
	if err != nil || rss < 1<<20 {
		t.Errorf("peakRSS = %d, %v", rss, err)
	}
	if _, err := cpuSeconds(-1); err == nil {
		t.Error("cpuSeconds of no process succeeded")
	}
}
