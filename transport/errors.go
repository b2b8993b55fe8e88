package transport

import (
	"context"
	"errors"
	"fmt"
)

// Code is a stable, machine-readable error class that crosses the wire.
type Code string

// Codes understood by every gridnode component. Add new ones at the end; never
// change the string of an existing one.
const (
	CodeBadRequest      Code = "bad_request"
	CodeNotFound        Code = "not_found"
	CodeTooLarge        Code = "too_large"
	CodeUnavailable     Code = "unavailable"
	CodeInternal        Code = "internal"
	CodeUnknownMethod   Code = "unknown_method"
	CodeBadFrame        Code = "bad_frame"
	CodeCancelled       Code = "cancelled"
	CodeUnauthenticated Code = "unauthenticated"
)

// maxErrorMessage bounds the message we put on the wire; a handler that
// returns a megabyte of text must not break the call.
const maxErrorMessage = 16 << 10

// Error is an error that crosses the wire: a stable code and a message a
// person can act on.
type Error struct {
	Code    Code   `cbor:"1,keyasint"`
	Message string `cbor:"2,keyasint"`
}

// Error returns "<code>: <message>".
func (e *Error) Error() string {
	return string(e.Code) + ": " + e.Message
}

// Is makes errors.Is(err, &Error{Code: c}) match any error with code c.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Message == "" && t.Code == e.Code
}

// Errorf builds an *Error with a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// CodeOf returns the code of the first *Error in err's chain. Context
// cancellation and deadlines map to CodeCancelled; anything else is
// CodeInternal. A nil error has the empty code.
func CodeOf(err error) Code {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		if e.Code == "" {
			return CodeInternal
		}
		return e.Code
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return CodeCancelled
	}
	return CodeInternal
}

// toWireError turns any handler error into the *Error sent to the peer.
func toWireError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		out := *e
		if out.Code == "" {
			out.Code = CodeInternal
		}
		out.Message = truncate(out.Message, maxErrorMessage)
		return &out
	}
	return &Error{Code: CodeOf(err), Message: truncate(err.Error(), maxErrorMessage)}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…(truncated)"
}
