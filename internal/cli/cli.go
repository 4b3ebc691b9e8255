// Package cli holds what app-connect's subcommands share: flag listings in
// the --flag form their usage lines use, and a plain logger for command
// output (no level=… msg=… lines in front of a person).
package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"sync"

	"github.com/lorawan-gateway/app-connect/internal/logging"
)

// PrintFlags lists fs's flags as "  --name VALUE" and the usage text below,
// the form the usage lines use (flag.PrintDefaults writes "-name").
func PrintFlags(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if name != "" {
			line += " " + strings.ToUpper(name)
		}
		fmt.Fprintf(w, "%s\n      %s", line, strings.ReplaceAll(usage, "\n", "\n      "))
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "0s" {
			fmt.Fprintf(w, " (default %s)", f.DefValue)
		}
		fmt.Fprintln(w)
	})
}

// NewFlagSet is a flag set whose parse errors are written to stderr with
// one prefix ("app-connect CMD: …") and whose -h/--help output goes to
// stdout (usage, then the flags).
func NewFlagSet(name, usage string, stdout, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are printed by Parse's caller, help by Usage
	fs.Usage = func() {
		fmt.Fprint(stdout, usage)
		var n int
		fs.VisitAll(func(*flag.Flag) { n++ })
		if n > 0 {
			fmt.Fprintln(stdout, "\nFlags:")
			PrintFlags(stdout, fs)
		}
	}
	return fs
}

// Parse parses args and reports the outcome as an exit status: -1 to go on,
// 0 after -h/--help (usage printed on stdout), 2 after a bad flag (one line on
// stderr naming the command and the flag).
func Parse(fs *flag.FlagSet, args []string, stderr io.Writer) int {
	err := fs.Parse(args)
	switch {
	case err == nil:
		return -1
	case err == flag.ErrHelp:
		return 0
	}
	// The flag package names flags "-x"; show them as the usage does.
	msg := dashes.ReplaceAllString(err.Error(), "$1--$2")
	fmt.Fprintf(stderr, "%s: %s (see %s --help)\n", fs.Name(), msg, fs.Name())
	return 2
}

// dashes finds a flag named with one dash in the flag package's messages
// ("… not defined: -x", "… for flag -x: …", "… argument: -x").
var dashes = regexp.MustCompile(`(^|: |flag |for )-([A-Za-z][A-Za-z0-9-]*)`)

// NewLogger is a logger for command output: "warning: message (key=value …)"
// lines, no time, no level= or msg= keys.
func NewLogger(w io.Writer, level slog.Leveler) *slog.Logger {
	return slog.New(&plainHandler{w: w, level: level, mu: &sync.Mutex{}})
}

type plainHandler struct {
	w     io.Writer
	level slog.Leveler
	attrs []slog.Attr
	mu    *sync.Mutex
}

func (h *plainHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level.Level() }

func (h *plainHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	switch {
	case r.Level >= slog.LevelError:
		b.WriteString("error: ")
	case r.Level >= slog.LevelWarn:
		b.WriteString("warning: ")
	case r.Level < slog.LevelInfo:
		b.WriteString("debug: ")
	}
	b.WriteString(r.Message)
	var kv []string
	add := func(a slog.Attr) bool {
		a = logging.RedactAttr(nil, a)
		if a.Key != "" {
			kv = append(kv, a.Key+"="+a.Value.String())
		}
		return true
	}
	for _, a := range h.attrs {
		add(a)
	}
	r.Attrs(add)
	if len(kv) > 0 {
		b.WriteString(" (" + strings.Join(kv, ", ") + ")")
	}
	b.WriteByte('\n')
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := io.WriteString(h.w, b.String())
	return err
}

func (h *plainHandler) WithAttrs(as []slog.Attr) slog.Handler {
	n := *h
	n.attrs = append(append([]slog.Attr{}, h.attrs...), as...)
	return &n
}

func (h *plainHandler) WithGroup(string) slog.Handler { return h }

// LockedWriter serialises writes to w, so that progress lines and log lines
// written from several goroutines never interleave.
type LockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

// NewLockedWriter wraps w.
func NewLockedWriter(w io.Writer) *LockedWriter { return &LockedWriter{w: w} }

func (l *LockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
