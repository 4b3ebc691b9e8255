package main

import (
	"io"
	"runtime"
	"testing"
	"time"

	"github.com/lorawan-gateway/app-connect/internal/sim"
	"github.com/lorawan-gateway/app-connect/statusreport"
)

// BenchmarkFleetCapacity measures what one exporter holds: the heap per
// gateway (a report with one application, as sim.GatewayStatus builds),
// reports decoded and stored per second, and the time of one scrape of a
// 10,000-gateway fleet. `make bench` prints it; nothing is asserted.
func BenchmarkFleetCapacity(b *testing.B) {
	const n = 10000
	now := time.Now()
	bodies := make([][]byte, n)
	for i := range bodies {
		_, bodies[i] = sim.GatewayStatus(i, now, 1)
	}
	var perGateway, perScrape float64
	for range b.N {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		f := &Fleet{MaxGateways: n, MaxApps: 16, Stale: time.Hour, Expire: 2 * time.Hour}
		for _, body := range bodies {
			if err := f.Accept("mqtt", "", body); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		perGateway = float64(after.HeapAlloc-before.HeapAlloc) / n
		start := time.Now()
		if err := writeMetrics(io.Discard, f.snapshot()); err != nil {
			b.Fatal(err)
		}
		perScrape = time.Since(start).Seconds()
		runtime.KeepAlive(f)
	}
	b.ReportMetric(perGateway, "heap-bytes/gateway")
	b.ReportMetric(perScrape*1000, "ms/scrape-10k")
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "reports/s")
}

// BenchmarkDecode is the cost of taking one report.
func BenchmarkDecode(b *testing.B) {
	_, body := sim.GatewayStatus(1, time.Now(), 1)
	b.SetBytes(int64(len(body)))
	for range b.N {
		if _, err := statusreport.Decode(body); err != nil {
			b.Fatal(err)
		}
	}
}
