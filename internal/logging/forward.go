package logging

import (
	"context"
	"log/slog"
	"sync/atomic"
)

// Forwarder is a slog.Handler for what starts before the process's logger
// exists (mPower's log settings are read first): it passes records to an
// initial handler until Set names the real one, then to that.
type Forwarder struct {
	h atomic.Pointer[slog.Handler]
}

// NewForwarder forwards to initial until Set.
func NewForwarder(initial slog.Handler) *Forwarder {
	f := &Forwarder{}
	f.h.Store(&initial)
	return f
}

// Set makes every later record go to h.
func (f *Forwarder) Set(h slog.Handler) { f.h.Store(&h) }

func (f *Forwarder) current() slog.Handler { return *f.h.Load() }

// Enabled implements slog.Handler.
func (f *Forwarder) Enabled(ctx context.Context, l slog.Level) bool {
	return f.current().Enabled(ctx, l)
}

// Handle implements slog.Handler.
func (f *Forwarder) Handle(ctx context.Context, r slog.Record) error {
	return f.current().Handle(ctx, r)
}

// WithAttrs implements slog.Handler.
func (f *Forwarder) WithAttrs(as []slog.Attr) slog.Handler {
	return derived{f: f, apply: func(h slog.Handler) slog.Handler { return h.WithAttrs(as) }}
}

// WithGroup implements slog.Handler.
func (f *Forwarder) WithGroup(name string) slog.Handler {
	return derived{f: f, apply: func(h slog.Handler) slog.Handler { return h.WithGroup(name) }}
}

// derived is a Forwarder with attributes or groups, applied to whichever
// handler is current when a record comes.
type derived struct {
	f     *Forwarder
	apply func(slog.Handler) slog.Handler
}

func (d derived) Enabled(ctx context.Context, l slog.Level) bool {
	return d.f.current().Enabled(ctx, l)
}

func (d derived) Handle(ctx context.Context, r slog.Record) error {
	return d.apply(d.f.current()).Handle(ctx, r)
}

func (d derived) WithAttrs(as []slog.Attr) slog.Handler {
	return derived{f: d.f, apply: func(h slog.Handler) slog.Handler { return d.apply(h).WithAttrs(as) }}
}

func (d derived) WithGroup(name string) slog.Handler {
	return derived{f: d.f, apply: func(h slog.Handler) slog.Handler { return d.apply(h).WithGroup(name) }}
}
