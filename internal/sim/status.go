package sim

import (
	"bytes"
	"fmt"
	"time"

	"github.com/lorawan-gateway/app-connect/statusreport"
)

// GatewayStatus is the status report of simulated gateway i at time at, with
// one application whose queue and counters grow with i (so every gateway's
// figures differ), and its GW-UUID. Used to feed the fleet exporter with a
// fleet without running a program per gateway.
func GatewayStatus(i int, at time.Time, seq uint64) (uuid string, body []byte) {
	uuid = fmt.Sprintf("00000000-0000-4000-8000-%012x", i)
	r := statusreport.Report{
		Type: statusreport.Type, Schema: statusreport.Schema, Time: at.UTC(), Seq: seq,
		Gateway:       statusreport.Gateway{UUID: uuid, Serial: fmt.Sprintf("%08d", 19000000+i), EUIs: []string{fmt.Sprintf("00-80-00-00-%02x-%02x-%02x-%02x", byte(i>>24), byte(i>>16), byte(i>>8), byte(i))}},
		Version:       "sim",
		UptimeSeconds: int64(seq) * 60,
		Applications: []statusreport.Application{{
			EUI: "ff-ff-ff-ff-ff-ff-ff-ff", Name: "default", State: "up",
			QueueRows: uint64(i % 7), QueueBytes: uint64(i%7) * 300, Received: uint64(i) * 10, Forwarded: uint64(i)*10 - uint64(i%7),
		}},
		LocalBroker: statusreport.LocalBroker{Connected: true, Received: uint64(i) * 10},
		LNS:         statusreport.LNS{Available: true},
		Joins:       statusreport.Outcomes{"Success": uint64(i % 5)},
		Downlinks:   statusreport.Outcomes{"sent": uint64(i % 3)},
		Process:     statusreport.Process{RSSBytes: 14 << 20, CPUSeconds: float64(seq)},
		Database:    statusreport.Database{SizeBytes: 1 << 20, FreeBytes: 100 << 20},
	}
	body, err := r.Encode()
	if err != nil {
		panic(err) // a fixed, valid report
	}
	return uuid, body
}

// countStatus counts a status report and keeps it as the last one. Called
// with s.mu held.
func (s *Sink) countStatus(body []byte) {
	s.stats.Status++
	s.lastStatus = bytes.Clone(body)
}

// LastStatus is the body of the last status report taken (nil when none).
func (s *Sink) LastStatus() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.lastStatus)
}
