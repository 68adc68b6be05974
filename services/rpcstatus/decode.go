package rpcstatus

import (
	"context"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	encodingproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/opendms/dms/services/errs"
)

// ServerEdge is the server side of the error table: a codec and the
// interceptors that go with it. A request whose bytes cannot be decoded is
// the client's mistake, InvalidArgument with reason REQUEST_INVALID, but
// grpc-go turns every codec error into Internal before an interceptor sees
// the call. So the codec accepts such a request, leaves the message empty
// and notes why; the interceptors answer with that error before any handler
// runs. Install both, with grpc.ForceServerCodecV2(edge.Codec()) and the
// interceptors first in their chains.
type ServerEdge struct {
	base encoding.CodecV2
	// undecodable maps a request message (its pointer) to why its bytes
	// could not be decoded, from the codec until an interceptor takes it.
	undecodable sync.Map
}

// NewServerEdge returns the codec and interceptors of one gRPC server.
func NewServerEdge() *ServerEdge {
	return &ServerEdge{base: encoding.GetCodecV2(encodingproto.Name)}
}

// Codec returns the server's codec: protobuf, as grpc-go's own.
func (e *ServerEdge) Codec() encoding.CodecV2 { return edgeCodec{e} }

type edgeCodec struct{ edge *ServerEdge }

func (c edgeCodec) Name() string { return c.edge.base.Name() }

func (c edgeCodec) Marshal(v any) (mem.BufferSlice, error) { return c.edge.base.Marshal(v) }

func (c edgeCodec) Unmarshal(data mem.BufferSlice, v any) error {
	err := c.edge.base.Unmarshal(data, v)
	if err == nil {
		return nil
	}
	m, ok := v.(proto.Message)
	if !ok {
		return err // not a request of ours: grpc-go's own answer
	}
	proto.Reset(m) // no half-decoded request reaches a handler
	c.edge.undecodable.Store(m, errs.Wrapf(errs.ErrRequestInvalid,
		"the request is not a valid %s message: %v", m.ProtoReflect().Descriptor().FullName(), err))
	return nil
}

// takeUndecodable returns the error noted for req, once.
func (e *ServerEdge) takeUndecodable(req any) error {
	if err, ok := e.undecodable.LoadAndDelete(req); ok {
		return err.(error)
	}
	return nil
}

// UnaryServerInterceptor refuses undecodable requests and converts domain
// errors returned by handlers.
func (e *ServerEdge) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if err := e.takeUndecodable(req); err != nil {
			return nil, Error(err)
		}
		resp, err := handler(ctx, req)
		return resp, Error(err)
	}
}

// StreamServerInterceptor refuses undecodable stream messages and converts
// domain errors returned by stream handlers.
func (e *ServerEdge) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		return Error(handler(srv, &edgeStream{ServerStream: ss, edge: e}))
	}
}

// edgeStream makes RecvMsg fail for a message the codec could not decode.
type edgeStream struct {
	grpc.ServerStream
	edge *ServerEdge
}

func (s *edgeStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if err := s.edge.takeUndecodable(m); err != nil {
		return Error(err)
	}
	return nil
}
