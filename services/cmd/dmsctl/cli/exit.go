package cli

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/opendms/dms/services/rpcstatus"
)

// Exit codes: what a script can rely on. They are part of dmsctl's
// interface; `dmsctl help exit-codes` prints this table.
const (
	ExitOK          = 0 // done
	ExitUsage       = 1 // the command line or the request was wrong (bad flag, INVALID_ARGUMENT)
	ExitNotFound    = 2 // a queue, group, message or identity named does not exist (NOT_FOUND)
	ExitRefused     = 3 // no or bad credential, or not allowed (UNAUTHENTICATED, PERMISSION_DENIED)
	ExitUnavailable = 4 // the server could not be reached or could not serve now (UNAVAILABLE, DEADLINE_EXCEEDED); retrying may help
	ExitConflict    = 5 // the state forbids it: already exists, quota, precondition (ALREADY_EXISTS, RESOURCE_EXHAUSTED, FAILED_PRECONDITION, ABORTED)
	ExitPartial     = 6 // some items of a batch failed (acks, redrives, sends); each item's result was printed
	ExitInternal    = 7 // anything else: a server error or a bug
)

const exitCodesHelp = `Exit codes of dmsctl (stable; scripts may rely on them):

  0  ok
  1  usage: the command line or the request was wrong (unknown flag, bad
     argument, INVALID_ARGUMENT or OUT_OF_RANGE from the server)
  2  not found: a queue, group, message or identity named does not exist
  3  refused: no credential, a bad or expired one, or not allowed
     (UNAUTHENTICATED, PERMISSION_DENIED)
  4  unavailable: the server could not be reached or cannot serve now
     (UNAVAILABLE, DEADLINE_EXCEEDED); retrying may help
  5  conflict: already exists, quota exceeded, precondition failed
     (ALREADY_EXISTS, RESOURCE_EXHAUSTED, FAILED_PRECONDITION, ABORTED)
  6  partial: some items of a batch failed (acks, redrives, sends); the
     result of every item was printed
  7  internal: any other error

Errors are printed on stderr as "dmsctl: <message> (<REASON>)", where REASON
is the server's stable machine-readable reason (see error_reason.proto).`

// usageError is a mistake on the command line.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// partialError says some items failed; their results were printed.
type partialError struct{ failed, total int }

func (e partialError) Error() string {
	return fmt.Sprintf("%d of %d failed", e.failed, e.total)
}

// exitCode maps an error to the exit code table.
func exitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	var ue usageError
	if errors.As(err, &ue) {
		return ExitUsage
	}
	var pe partialError
	if errors.As(err, &pe) {
		return ExitPartial
	}
	var bt brokenTrail
	if errors.As(err, &bt) {
		return ExitConflict
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return ExitUnavailable
	}
	st, ok := status.FromError(err)
	if !ok {
		var se interface{ GRPCStatus() *status.Status }
		if errors.As(err, &se) {
			st, ok = se.GRPCStatus(), true
		}
	}
	if !ok {
		return ExitInternal
	}
	switch st.Code() {
	case codes.InvalidArgument, codes.OutOfRange:
		return ExitUsage
	case codes.NotFound:
		return ExitNotFound
	case codes.Unauthenticated, codes.PermissionDenied:
		return ExitRefused
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
		return ExitUnavailable
	case codes.AlreadyExists, codes.ResourceExhausted, codes.FailedPrecondition, codes.Aborted:
		return ExitConflict
	}
	return ExitInternal
}

// errorLine is how an error is shown: the server's message and its stable
// reason.
func errorLine(err error) string {
	if st, ok := status.FromError(err); ok {
		if reason := rpcstatus.Reason(err); reason != "" {
			return fmt.Sprintf("%s (%s)", st.Message(), reason)
		}
		return fmt.Sprintf("%s (%s)", st.Message(), st.Code())
	}
	return err.Error()
}

// notFoundf is a NOT_FOUND found by dmsctl itself.
func notFoundf(format string, args ...any) error {
	return status.Errorf(codes.NotFound, format, args...)
}

// brokenTrail is a verification that found the audit trail altered.
type brokenTrail struct{}

func (brokenTrail) Error() string { return "the audit trail's hash chain is broken" }

// unavailablef is an UNAVAILABLE found by dmsctl itself.
func unavailablef(format string, args ...any) error {
	return status.Errorf(codes.Unavailable, format, args...)
}
