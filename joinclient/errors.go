package joinclient

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/lorawan-gateway/app-connect/internal/backoff"
)

// Kinds of BI failure, matched with errors.Is against a *ResultError (an
// answer with a non-Success ResultCode) or an *Error.
var (
	// ErrNotFound: the Join Server does not know the device (UnknownDevEUI, UnknownDevAddr).
	ErrNotFound = errors.New("device not found")
	// ErrMICFailed: the MIC of the frame is wrong (MICFailed).
	ErrMICFailed = errors.New("MIC failed")
	// ErrActivationDisallowed: the device may not (roam and) activate
	// (ActivationDisallowed, DevRoamingDisallowed, RoamingActDisallowed, NoRoamingAgreement).
	ErrActivationDisallowed = errors.New("activation disallowed")
	// ErrMalformed: the message was refused as malformed (MalformedRequest,
	// MalformedMessage, FrameSizeError, InvalidProtocolVersion), or the proxy
	// refused a malformed request from the network server.
	ErrMalformed = errors.New("malformed message")
	// ErrUnknownReceiver: no Join Server for the JoinEUI (UnkownReceiver in
	// either spelling, or no route).
	ErrUnknownReceiver = errors.New("unknown receiver")
	// ErrOther: any other result code, known or not.
	ErrOther = errors.New("join server error")
)

// Kinds of failure that are not a BI result code, matched with errors.Is against an *Error.
var (
	ErrNoRoute            = errors.New("no Join Server for JoinEUI")
	ErrTransport          = errors.New("transport error")
	ErrTimeout            = errors.New("join budget exceeded")
	ErrHTTPStatus         = errors.New("HTTP status without BI answer")
	ErrMalformedAnswer    = errors.New("malformed answer")
	ErrKEK                = errors.New("key envelope error")
	ErrIncomplete         = errors.New("incomplete Success answer")
	ErrAppSKeyUnavailable = errors.New("AppSKey unavailable")
	ErrBusy               = errors.New("too many join requests in flight")
)

// ResultError is a BI answer whose ResultCode is not Success.
type ResultError struct {
	JoinServer  string      // Join Server name (interop file path without extension)
	MessageType MessageType // request type
	Code        ResultCode
	Description string
	HTTPStatus  int
}

func (e *ResultError) Error() string {
	s := fmt.Sprintf("joinclient: js %s: %s: result %s", e.JoinServer, e.MessageType, e.Code)
	if e.Description != "" {
		s += ": " + truncate(e.Description, 200)
	}
	return s
}

// Is maps the result code to its kind (ErrNotFound, ErrMICFailed, ...).
func (e *ResultError) Is(target error) bool { return target == codeKind(e.Code) }

// codeKind maps a result code to its kind sentinel.
func codeKind(c ResultCode) error {
	switch c {
	case ResultUnknownDevEUI, ResultUnknownDevAddr:
		return ErrNotFound
	case ResultMICFailed:
		return ErrMICFailed
	case ResultActivationDisallowed, ResultDevRoamingDisallowed, ResultRoamingActDisallowed, ResultNoRoamingAgreement:
		return ErrActivationDisallowed
	case ResultMalformedRequest, ResultMalformedMessage, ResultFrameSizeError, ResultInvalidProtocolVersion:
		return ErrMalformed
	case ResultUnknownReceiver, ResultUnknownReceiverCorrect:
		return ErrUnknownReceiver
	}
	return ErrOther
}

// Error is a join failure that is not a BI result code: no route, transport,
// timeout, HTTP status, malformed or incomplete answer, key envelope.
type Error struct {
	JoinServer  string      // empty when no Join Server was chosen
	MessageType MessageType // request type
	Kind        error       // one of ErrNoRoute, ErrTransport, ErrTimeout, ...
	HTTPStatus  int         // for ErrHTTPStatus
	Err         error       // cause, may be nil
}

func (e *Error) Error() string {
	s := "joinclient: "
	if e.JoinServer != "" {
		s += "js " + e.JoinServer + ": "
	}
	s += string(e.MessageType) + ": " + e.Kind.Error()
	if e.Kind == ErrHTTPStatus {
		s += " " + strconv.Itoa(e.HTTPStatus)
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap exposes both the kind and the cause to errors.Is/As.
func (e *Error) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Err}
}

// Is makes a missing route also an unknown receiver.
func (e *Error) Is(target error) bool {
	return e.Kind == ErrNoRoute && target == ErrUnknownReceiver
}

// Temporary reports HTTP 408, 429 and 5xx, transport errors and timeouts (for
// metrics; nothing is retried within a join).
func (e *Error) Temporary() bool {
	switch e.Kind {
	case ErrTransport, ErrTimeout:
		return true
	case ErrHTTPStatus:
		return backoff.RetryableStatus(e.HTTPStatus)
	}
	return false
}

// Recorded results that are not a BI result code (see ResultOf).
const (
	RecordedSuccess            = "Success"
	RecordedNoRoute            = "no_route"
	RecordedMalformedRequest   = "malformed_request"
	RecordedTransport          = "transport"
	RecordedTimeout            = "timeout"
	RecordedMalformedAnswer    = "malformed_answer"
	RecordedKEK                = "kek"
	RecordedIncomplete         = "incomplete"
	RecordedAppSKeyUnavailable = "appskey_unavailable"
	RecordedBusy               = "busy"
)

// ResultOf returns the result recorded for a join attempt that ended with err:
// "Success", the BI result code as received, or one of the Recorded* values
// ("http_<status>" for an HTTP status without BI body).
func ResultOf(err error) string {
	if err == nil {
		return RecordedSuccess
	}
	var re *ResultError
	if errors.As(err, &re) {
		return string(re.Code)
	}
	var e *Error
	if errors.As(err, &e) {
		switch e.Kind {
		case ErrNoRoute:
			return RecordedNoRoute
		case ErrMalformed:
			return RecordedMalformedRequest
		case ErrTransport:
			return RecordedTransport
		case ErrTimeout:
			return RecordedTimeout
		case ErrHTTPStatus:
			return "http_" + strconv.Itoa(e.HTTPStatus)
		case ErrMalformedAnswer:
			return RecordedMalformedAnswer
		case ErrKEK:
			return RecordedKEK
		case ErrIncomplete:
			return RecordedIncomplete
		case ErrAppSKeyUnavailable:
			return RecordedAppSKeyUnavailable
		case ErrBusy:
			return RecordedBusy
		}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return RecordedTimeout
	}
	return RecordedTransport
}
