package config

import "path/filepath"

// Log destinations.
const (
	LogSyslog = "syslog" // the local syslog socket, ident SyslogIdent
	LogFile   = "file"   // File, size-capped and rotated
	LogStderr = "stderr" // standard error (tests, running by hand)
)

// Log selects the log level and destination. Level and Destination left
// empty take mPower's defaultApp.log settings (conduit.md §10), else info and
// syslog: the YAML file overrides mPower only where it says something.
type Log struct {
	Level       string `yaml:"level"`        // debug, info, warn, error, critical; empty: mPower's, else info
	Destination string `yaml:"destination"`  // syslog, file, stderr; empty: mPower's, else syslog
	File        string `yaml:"file"`         // log file for destination file; empty: mPower's log.path, else DefaultLogFile
	MaxBytes    int64  `yaml:"max_bytes"`    // size at which the file is rotated
	Backups     int    `yaml:"backups"`      // rotated files kept (file.1 … file.N); 0 keeps none
	SyslogIdent string `yaml:"syslog_ident"` // syslog tag; lora-app-connect matches filters written for the original
}

// DefaultLogFile is the log file when neither the YAML file nor mPower name one.
const DefaultLogFile = "/var/log/app-connect.log"

// DefaultLog is the gateway default.
func DefaultLog() Log {
	return Log{MaxBytes: 1 << 20, Backups: 3, SyslogIdent: "app-connect"}
}

// EffectiveLevel is Level, or info when unset.
func (l Log) EffectiveLevel() string {
	if l.Level == "" {
		return "info"
	}
	return l.Level
}

// EffectiveDestination is Destination, or syslog when unset.
func (l Log) EffectiveDestination() string {
	if l.Destination == "" {
		return LogSyslog
	}
	return l.Destination
}

// EffectiveFile is File, or DefaultLogFile when unset.
func (l Log) EffectiveFile() string {
	if l.File == "" {
		return DefaultLogFile
	}
	return l.File
}

// Validate checks the log settings.
func (l Log) Validate() []FieldError {
	var errs []FieldError
	switch l.Level {
	case "", "debug", "info", "warn", "error", "critical":
	default:
		errs = append(errs, fieldErr("log.level", "must be one of debug, info, warn, error, critical (or empty for mPower's); got %q", l.Level))
	}
	switch l.Destination {
	case "", LogSyslog, LogFile, LogStderr:
	default:
		errs = append(errs, fieldErr("log.destination", "must be one of syslog, file, stderr (or empty for mPower's); got %q", l.Destination))
	}
	if l.File != "" && !filepath.IsAbs(l.File) {
		errs = append(errs, fieldErr("log.file", "must be an absolute path, got %q", l.File))
	}
	if l.MaxBytes < 16<<10 {
		errs = append(errs, fieldErr("log.max_bytes", "must be at least 16384, got %d", l.MaxBytes))
	}
	if l.Backups < 0 || l.Backups > 20 {
		errs = append(errs, fieldErr("log.backups", "must be between 0 and 20, got %d", l.Backups))
	}
	if l.SyslogIdent == "" {
		errs = append(errs, fieldErr("log.syslog_ident", "must not be empty"))
	}
	return errs
}
