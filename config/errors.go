package config

import (
	"fmt"
	"strings"
)

// FieldError is a validation failure of one key, identified by its dotted path from
// the document root ("join.listen", "storage.outbox_max_rows"). The loader
// turns it into an *Error carrying the file and line of that key.
type FieldError struct {
	Key string
	Err error
}

func (e FieldError) Error() string { return e.Key + ": " + e.Err.Error() }
func (e FieldError) Unwrap() error { return e.Err }

// fieldErr is shorthand for building a FieldError with a formatted message.
func fieldErr(key, format string, args ...any) FieldError {
	return FieldError{Key: key, Err: fmt.Errorf(format, args...)}
}

// Error is a configuration error located in a file: "app-connect.yml:12: lns.broker: ...".
type Error struct {
	File string
	Line int // 0 when unknown (the key is absent from the file, e.g. a bad default combination)
	Key  string
	Err  error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	if e.Key != "" {
		b.WriteString(": ")
		b.WriteString(e.Key)
	}
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Errors is every problem found in one file, in file order.
type Errors []*Error

func (es Errors) Error() string {
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

// Unwrap lets errors.As find an individual *Error.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}
