package config

// Log selects the log level and destination.
type Log struct {
	Level string `yaml:"level"` // debug, info, warn, error
}

// DefaultLog is the gateway default.
func DefaultLog() Log { return Log{Level: "info"} }

// Validate checks the log settings.
func (l Log) Validate() []FieldError {
	switch l.Level {
	case "debug", "info", "warn", "error":
		return nil
	}
	return []FieldError{fieldErr("log.level", "must be one of debug, info, warn, error; got %q", l.Level)}
}
