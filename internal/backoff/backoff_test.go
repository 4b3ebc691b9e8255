package backoff

import (
	"context"
	"testing"
	"time"
)

func TestNextStaysWithinHalfToFullAndDoublesToMax(t *testing.T) {
	b := New(100*time.Millisecond, 350*time.Millisecond)
	wantCeil := []time.Duration{100, 200, 350, 350, 350}
	for i, c := range wantCeil {
		c *= time.Millisecond
		for range 50 {
			// Fresh copies so each sample is taken at the same step.
			cp := *b
			d := cp.Next()
			if d < c/2 || d > c {
				t.Fatalf("step %d: delay %v outside [%v, %v]", i, d, c/2, c)
			}
		}
		b.Next()
	}
	b.Reset()
	if d := b.Next(); d > 100*time.Millisecond {
		t.Fatalf("after Reset: delay %v, want ≤ 100ms", d)
	}
}

func TestNewDefaults(t *testing.T) {
	tests := []struct {
		name             string
		min, max         time.Duration
		wantMin, wantMax time.Duration
	}{
		{"zero min becomes one second", 0, 0, time.Second, time.Second},
		{"max below min becomes min", 2 * time.Second, time.Second, 2 * time.Second, 2 * time.Second},
		{"kept", time.Millisecond, time.Minute, time.Millisecond, time.Minute},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := New(tc.min, tc.max)
			if b.min != tc.wantMin || b.max != tc.wantMax {
				t.Fatalf("New(%v, %v) = min %v max %v, want %v %v", tc.min, tc.max, b.min, b.max, tc.wantMin, tc.wantMax)
			}
		})
	}
}

func TestSleepReturnsFalseWhenCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if New(time.Hour, time.Hour).Sleep(ctx) {
		t.Fatal("Sleep with a cancelled context reported the delay elapsed")
	}
	if !New(time.Microsecond, time.Microsecond).Sleep(context.Background()) {
		t.Fatal("Sleep of 1µs reported cancellation")
	}
}

func TestStatusRule(t *testing.T) {
	tests := []struct {
		code                 int
		retryable, permanent bool
	}{
		{200, false, false},
		{302, false, false},
		{400, false, true},
		{401, false, true},
		{404, false, true},
		{408, true, false},
		{413, false, true},
		{429, true, false},
		{499, false, true},
		{500, true, false},
		{502, true, false},
		{503, true, false},
		{599, true, false},
	}
	for _, tc := range tests {
		if got := RetryableStatus(tc.code); got != tc.retryable {
			t.Errorf("RetryableStatus(%d) = %v, want %v", tc.code, got, tc.retryable)
		}
		if got := PermanentStatus(tc.code); got != tc.permanent {
			t.Errorf("PermanentStatus(%d) = %v, want %v", tc.code, got, tc.permanent)
		}
	}
}
