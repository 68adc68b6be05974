// Package rpcstatus is the one place where domain errors become gRPC
// statuses: a code from the error's kind plus a google.rpc.ErrorInfo detail
// carrying the stable reason, which the REST surfaces and SDKs show.
package rpcstatus

import (
	"context"
	"errors"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/opendms/dms/services/errs"
)

// Domain is the ErrorInfo domain of every DMS error.
const Domain = "dms.opendms.io"

var kindCodes = map[errs.Kind]codes.Code{
	errs.KindInternal:           codes.Internal,
	errs.KindInvalidArgument:    codes.InvalidArgument,
	errs.KindNotFound:           codes.NotFound,
	errs.KindAlreadyExists:      codes.AlreadyExists,
	errs.KindResourceExhausted:  codes.ResourceExhausted,
	errs.KindFailedPrecondition: codes.FailedPrecondition,
	errs.KindUnavailable:        codes.Unavailable,
	errs.KindUnimplemented:      codes.Unimplemented,
	errs.KindUnauthenticated:    codes.Unauthenticated,
	errs.KindPermissionDenied:   codes.PermissionDenied,
}

// New builds the status of a domain error. Errors that already are gRPC
// statuses (from a call to another role) pass through unchanged, so that a
// reason raised by storage reaches the client of ingest intact.
func New(err error) *status.Status {
	if err == nil {
		return nil
	}
	if s, ok := status.FromError(err); ok {
		return s
	}
	switch {
	case errors.Is(err, context.Canceled):
		return status.New(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.New(codes.DeadlineExceeded, err.Error())
	}
	e := errs.Of(err)
	msg := err.Error()
	if e == errs.ErrInternal && !errors.Is(err, errs.ErrInternal) {
		msg = "internal error: " + msg
	}
	s := status.New(kindCodes[e.Kind], msg)
	if withInfo, derr := s.WithDetails(&errdetails.ErrorInfo{Reason: e.Reason, Domain: Domain}); derr == nil {
		return withInfo
	}
	return s
}

// Error converts a domain error into a gRPC status error.
func Error(err error) error {
	if err == nil {
		return nil
	}
	return New(err).Err()
}

// Reason returns the stable reason of a gRPC status error, or "" when the
// status carries none.
func Reason(err error) string {
	s, ok := status.FromError(err)
	if !ok {
		return ""
	}
	for _, d := range s.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == Domain {
			return info.GetReason()
		}
	}
	return ""
}

// Local calls a handler of a role in the same process in place of a gRPC
// client call, with the same contract: the same request and response types
// and errors converted to statuses as the server interceptor does. It skips
// serialization, so neither side may modify a message after handing it over.
//
// When the caller's span is recorded (traces are exported), the call gets a
// span of its own, as a gRPC call would from otelgrpc, so that colocated
// roles show in a trace like remote ones; otherwise it costs one context
// lookup.
func Local[Req, Resp any](ctx context.Context, req *Req, handler func(context.Context, *Req) (*Resp, error)) (*Resp, error) {
	if err := ctx.Err(); err != nil {
		return nil, Error(err)
	}
	if parent := trace.SpanFromContext(ctx); parent.IsRecording() {
		var span trace.Span
		ctx, span = parent.TracerProvider().Tracer(tracerName).Start(ctx, localSpanName(req),
			trace.WithSpanKind(trace.SpanKindInternal), trace.WithAttributes(attribute.String("dms.call", "in-process")))
		defer span.End()
		resp, err := handler(ctx, req)
		err = Error(err)
		if err != nil {
			span.SetStatus(otelcodes.Error, err.Error())
			span.SetAttributes(attribute.String("rpc.grpc.status_code", status.Code(err).String()))
		}
		return resp, err
	}
	resp, err := handler(ctx, req)
	return resp, Error(err)
}

const tracerName = "github.com/opendms/dms/services/rpcstatus"

// localSpanName names an in-process call as otelgrpc names a gRPC one,
// from its request type: dms.cluster.storage.v1.AppendRequest gives
// dms.cluster.storage.v1/Append.
func localSpanName(req any) string {
	m, ok := req.(proto.Message)
	if !ok {
		return "in-process call"
	}
	name := m.ProtoReflect().Descriptor().FullName()
	return string(name.Parent()) + "/" + strings.TrimSuffix(string(name.Name()), "Request")
}
