// Package logging builds app-connect's logger: syslog over the local socket,
// a size-capped rotating file or stderr, with a live level, secret-named
// attributes redacted and the last error records kept for /status; the
// settings app-connect.yml leaves unset come from mPower's defaultApp.log
// (ReadMPower, ApplyMPower, ApplyMPowerLevel).
package logging

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"log/syslog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/lorawan-gateway/app-connect/config"
)

// LevelCritical is mPower's CRITICAL (level 0): above slog's error.
const LevelCritical = slog.LevelError + 4

// LevelAll is mPower's "all" (100, 60): everything, debug included.
const LevelAll = slog.LevelDebug

// Logger is the process's logger with its live level and its kept errors.
type Logger struct {
	*slog.Logger
	// Level is the live level (SIGHUP, mPower's log.level).
	Level *slog.LevelVar
	// Errors keeps the last error records for /status.
	Errors *ErrorRing
	close  func()
}

// Close closes the destination (file or syslog connection).
func (l *Logger) Close() { l.close() }

// New builds the logger cfg describes: syslog over the local socket (stderr
// with a warning when there is none), a size-capped rotating file, or stderr.
func New(cfg config.Log, stderr io.Writer) (*Logger, error) {
	lv := new(slog.LevelVar)
	lvl, err := ParseLevel(cfg.EffectiveLevel())
	if err != nil {
		return nil, err
	}
	lv.Set(lvl)
	opts := &slog.HandlerOptions{Level: lv, ReplaceAttr: RedactAttr}
	var h slog.Handler
	closeFn := func() {}
	var warn string
	switch cfg.EffectiveDestination() {
	case config.LogStderr:
		h = slog.NewTextHandler(stderr, opts)
	case config.LogFile:
		f, err := openRotating(cfg.EffectiveFile(), cfg.MaxBytes, cfg.Backups)
		if err != nil {
			return nil, fmt.Errorf("log: %w", err)
		}
		h = slog.NewTextHandler(f, opts)
		closeFn = func() { f.Close() }
	case config.LogSyslog:
		w, err := syslog.New(syslog.LOG_INFO|syslog.LOG_DAEMON, cfg.SyslogIdent)
		if err != nil {
			h = slog.NewTextHandler(stderr, opts)
			warn = "no syslog socket; logging to stderr: " + err.Error()
			break
		}
		h = newSyslogHandler(w, opts)
		closeFn = func() { w.Close() }
	default:
		return nil, fmt.Errorf("log: destination %q not supported", cfg.Destination)
	}
	ring := &ErrorRing{}
	l := &Logger{Logger: slog.New(ringHandler{Handler: h, ring: ring, level: lv}), Level: lv, Errors: ring, close: closeFn}
	if warn != "" {
		l.Warn(warn)
	}
	return l, nil
}

// ParseLevel maps a log.level value of app-connect.yml to a slog level.
func ParseLevel(s string) (slog.Level, error) {
	switch s {
	case "debug":
		return slog.LevelDebug, nil
	case "", "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	case "critical":
		return LevelCritical, nil
	}
	return slog.LevelInfo, fmt.Errorf("log: level %q not supported", s)
}

// LevelName is ParseLevel's inverse.
func LevelName(l slog.Level) string {
	switch {
	case l <= slog.LevelDebug:
		return "debug"
	case l <= slog.LevelInfo:
		return "info"
	case l <= slog.LevelWarn:
		return "warn"
	case l <= slog.LevelError:
		return "error"
	}
	return "critical"
}

// MPowerLevel maps mPower's defaultApp.log.level (conduit.md §10): 100
// and 60 all, 50 debug, 30 info, 20 warning, 10 error, 0 critical, anything
// else info.
func MPowerLevel(level int) slog.Level {
	switch level {
	case 100, 60:
		return LevelAll
	case 50:
		return slog.LevelDebug
	case 30:
		return slog.LevelInfo
	case 20:
		return slog.LevelWarn
	case 10:
		return slog.LevelError
	case 0:
		return LevelCritical
	}
	return slog.LevelInfo
}

// ApplyMPower fills what app-connect.yml left unset (level, destination,
// file) from mPower's defaultApp.log: the YAML file wins where it says
// something. An absent mPower log object (all zero) changes nothing.
func ApplyMPower(cfg config.Log, d config.AppLog) config.Log {
	if d == (config.AppLog{}) {
		return cfg
	}
	if cfg.Level == "" {
		cfg.Level = LevelName(MPowerLevel(d.Level))
	}
	if cfg.Destination == "" {
		switch strings.ToUpper(d.Destination) {
		case "FILE":
			cfg.Destination = config.LogFile
		case "SYSLOG":
			cfg.Destination = config.LogSyslog
		}
	}
	if cfg.File == "" && d.Path != "" && filepath.IsAbs(d.Path) {
		cfg.File = d.Path
	}
	return cfg
}

// RedactAttr blanks attributes named like secrets, whatever value the caller
// passed: a second line of defence behind never logging secrets.
func RedactAttr(_ []string, a slog.Attr) slog.Attr {
	switch strings.ToLower(a.Key) {
	case "password", "passwd", "apikey", "api_key", "secret", "token", "owner_token", "authorization",
		"app_s_key", "nwk_s_key", "appskey", "nwkskey", "app_key", "nwk_key", "kek", "private_key":
		return slog.String(a.Key, "[redacted]")
	}
	return a
}

// syslogHandler formats records as text (no time: syslog stamps them) and
// sends each with the syslog severity of its level.
type syslogHandler struct {
	inner slog.Handler
	out   *syslogOut
}

// syslogOut is shared by a handler and its With… derivatives: the text
// handler writes one record per Write, sent with the level set just before.
type syslogOut struct {
	mu    sync.Mutex
	w     *syslog.Writer
	level slog.Level
}

func (o *syslogOut) Write(p []byte) (int, error) {
	msg := string(bytes.TrimRight(p, "\n"))
	var err error
	switch {
	case o.level >= LevelCritical:
		err = o.w.Crit(msg)
	case o.level >= slog.LevelError:
		err = o.w.Err(msg)
	case o.level >= slog.LevelWarn:
		err = o.w.Warning(msg)
	case o.level >= slog.LevelInfo:
		err = o.w.Info(msg)
	default:
		err = o.w.Debug(msg)
	}
	return len(p), err
}

func newSyslogHandler(w *syslog.Writer, opts *slog.HandlerOptions) *syslogHandler {
	o := &syslogOut{w: w}
	inner := slog.NewTextHandler(o, &slog.HandlerOptions{
		Level: opts.Level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return opts.ReplaceAttr(groups, a)
		},
	})
	return &syslogHandler{inner: inner, out: o}
}

func (h *syslogHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h *syslogHandler) Handle(ctx context.Context, r slog.Record) error {
	h.out.mu.Lock()
	defer h.out.mu.Unlock()
	h.out.level = r.Level
	return h.inner.Handle(ctx, r)
}

func (h *syslogHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &syslogHandler{inner: h.inner.WithAttrs(as), out: h.out}
}

func (h *syslogHandler) WithGroup(name string) slog.Handler {
	return &syslogHandler{inner: h.inner.WithGroup(name), out: h.out}
}

// rotatingFile is a log file rotated when it would exceed max bytes: file
// becomes file.1, file.1 file.2 … up to backups files; older ones are removed.
type rotatingFile struct {
	mu      sync.Mutex
	path    string
	max     int64
	backups int
	f       *os.File
	size    int64
}

func openRotating(path string, max int64, backups int) (*rotatingFile, error) {
	r := &rotatingFile{path: path, max: max, backups: backups}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("log file: %w", err)
	}
	if err := r.open(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *rotatingFile) open() error {
	f, err := os.OpenFile(r.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("log file: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("log file: %w", err)
	}
	r.f, r.size = f, fi.Size()
	return nil
}

func (r *rotatingFile) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return 0, errors.New("log file closed")
	}
	if r.size > 0 && r.size+int64(len(p)) > r.max {
		if err := r.rotate(); err != nil {
			return 0, err
		}
	}
	n, err := r.f.Write(p)
	r.size += int64(n)
	return n, err
}

func (r *rotatingFile) rotate() error {
	r.f.Close()
	r.f = nil
	if r.backups == 0 {
		os.Remove(r.path)
	} else {
		os.Remove(r.path + "." + strconv.Itoa(r.backups))
		for i := r.backups - 1; i >= 1; i-- {
			os.Rename(r.path+"."+strconv.Itoa(i), r.path+"."+strconv.Itoa(i+1))
		}
		os.Rename(r.path, r.path+".1")
	}
	return r.open()
}

func (r *rotatingFile) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f = nil
	return err
}
