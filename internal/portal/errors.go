// Package portal is certportal's domain: who a user is, what they may do, and
// the issuance of a certificate bundle, independent of HTTP and of Vault's API.
package portal

import (
	"errors"
	"fmt"
	"time"
)

// Code classifies an Error; the web layer maps each code to one HTTP status.
type Code string

const (
	EInvalid      Code = "invalid"      // bad input, shown back with the field named
	EUnauthorized Code = "unauthorized" // not logged in, or bad credentials
	EForbidden    Code = "forbidden"    // logged in, not allowed
	ENotFound     Code = "not_found"
	EConflict     Code = "conflict"    // the thing asked for is already under way (a reconciliation)
	EUnavailable  Code = "unavailable" // Vault or the store is down; nothing was done
	ETooMany      Code = "too_many"    // too many failed attempts; try again after RetryAfter
	EInternal     Code = "internal"
)

// Error is the one error type handlers inspect. Message is a message-catalog
// key, never text from Vault or the database; Err keeps the cause for logs.
type Error struct {
	Code    Code
	Message string // catalog key, e.g. "error.login_failed"
	Field   string // form field at fault, for EInvalid
	Err     error
	// RetryAfter is when to try again, for ETooMany.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	s := string(e.Code) + ": " + e.Message
	if e.Field != "" {
		s += " (" + e.Field + ")"
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf builds an Error with a cause.
func Errorf(code Code, message string, format string, args ...any) *Error {
	return &Error{Code: code, Message: message, Err: fmt.Errorf(format, args...)}
}

// Invalid is a bad form field.
func Invalid(field, message string) *Error {
	return &Error{Code: EInvalid, Field: field, Message: message}
}

// storeUnavailable is the answer when the portal's database failed: 503,
// "try again", cause kept for the log.
func storeUnavailable(err error) *Error {
	return &Error{Code: EUnavailable, Message: "error.store_unavailable", Err: err}
}

// vaultUnavailable is the answer when Vault did not answer as it should:
// 503, "try again", cause kept for the log.
func vaultUnavailable(err error) *Error {
	return &Error{Code: EUnavailable, Message: "error.vault_unavailable", Err: err}
}

// ErrorCode returns err's Code, EInternal for anything that is not an *Error.
func ErrorCode(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EInternal
}

// ErrorMessage returns the catalog key for err; internal errors all read the same.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) && e.Message != "" {
		return e.Message
	}
	return "error.internal"
}
