// Package faults is the fault suite of `make faults`: each case runs the real
// app-connect binary against a real local Mosquitto and the simulator's remote
// sink and mPower API (internal/testpeer, internal/sim), injects one of a
// gateway's failure modes (full flash, frozen process, broker restart, power
// cut, wall-clock jumps, long soak, vanished database) and prints what was
// lost, duplicated and how long recovery took, as "RESULT" lines.
//
// The tests carry the build tag "faults", so `go test ./...` does not run
// them; `make faults-short`, part of `make test`, runs every case but the
// clock jump and the soak, with a 5 s freeze. Cases that need what the machine does not allow (root for tmpfs and
// loop mounts, CAP_SYS_TIME to set the clock) are skipped with the reason,
// never reported as passed; the Makefile target prints them as NOT RUN.
// FAULTS_SOAK sets the soak's length (default 3m; the full form is
// FAULTS_SOAK=1h); the soak is judged on trends (the medians of its first and
// last quarters, and the level once the load stopped), not single samples.
//
// The clock case sets the machine's wall clock, shared by every process on
// it, 3 h away for less than a minute at a time, and always puts it back to
// the wall time read before the first jump plus the monotonic time elapsed:
// by the test, t.Cleanup, a deferred recover, a watchdog per jump and a
// guardian child process that outlives a test binary killed or timed out
// (wallclock_test.go).
package faults
