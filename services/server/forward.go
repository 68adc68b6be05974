package server

import (
	"context"
	"errors"
	"io"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/catalog"
	"github.com/opendms/dms/services/errs"
	"github.com/opendms/dms/services/rpcstatus"
)

// forwardedHeader marks a call one node forwarded to another, which serves
// it or refuses it but never forwards it again.
const forwardedHeader = "dms-forwarded-by"

// forwardAttempts bounds how often a call is sent again after the owner it
// was forwarded to had just lost its shard.
const forwardAttempts = 4

// The consumer API is served by the owner of the queue's delivery shard:
// any node takes the call and forwards it there, unchanged, over the
// internal listener, so that a client may talk to any node and each call
// crosses the network once more at most.
var forwardedServices = []string{"/" + dmsv1.ConsumerService_ServiceDesc.ServiceName + "/"}

func isForwardedService(method string) bool {
	for _, prefix := range forwardedServices {
		if strings.HasPrefix(method, prefix) {
			return true
		}
	}
	return false
}

// ownerOfGroupName returns the node owning the delivery shard of the queue
// a group resource name names, or "" when it is this node.
func (s *Server) ownerOfGroupName(ctx context.Context, groupName string) (string, error) {
	gn, err := catalog.ParseGroupName(groupName)
	if err != nil {
		return "", nil // the handler answers the malformed name
	}
	q, err := s.cache.ResolveQueue(ctx, gn.Project, gn.Queue)
	if err != nil {
		return "", nil // likewise for a queue that does not exist
	}
	owner, err := s.ownerNode(ctx, storagev1.UnitKind_UNIT_KIND_DELIVERY_SHARD, q.GetId())
	if err != nil || owner == s.NodeName {
		return "", err
	}
	return owner, nil
}

func forwardedCall(ctx context.Context) bool {
	md, _ := metadata.FromIncomingContext(ctx)
	return len(md.Get(forwardedHeader)) > 0
}

// forwardInterceptors returns the forwarding interceptors of a listener.
// Only a node forwards, over the internal listener; the public one forwards
// whatever a client marks.
func (s *Server) forwardInterceptors(public bool) (grpc.UnaryServerInterceptor, grpc.StreamServerInterceptor) {
	if !public {
		return s.forwardUnary, s.forwardStream
	}
	unmarked := func(ctx context.Context) context.Context {
		md, ok := metadata.FromIncomingContext(ctx)
		if !ok || len(md.Get(forwardedHeader)) == 0 {
			return ctx
		}
		md = md.Copy()
		md.Delete(forwardedHeader)
		return metadata.NewIncomingContext(ctx, md)
	}
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			return s.forwardUnary(unmarked(ctx), req, info, handler)
		}, func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
			if ctx := unmarked(ss.Context()); ctx != ss.Context() {
				ss = &replacedContextStream{ServerStream: ss, ctx: ctx}
			}
			return s.forwardStream(srv, ss, info, handler)
		}
}

type replacedContextStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (r *replacedContextStream) Context() context.Context { return r.ctx }

// forwardUnary is the server interceptor that forwards consumer calls to
// the owner of their queue's delivery shard.
func (s *Server) forwardUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	named, ok := req.(interface{ GetGroup() string })
	if !ok || !isForwardedService(info.FullMethod) || forwardedCall(ctx) {
		return handler(ctx, req)
	}
	for attempt := 1; ; attempt++ {
		changed := s.placement.Changed()
		owner, err := s.ownerOfGroupName(ctx, named.GetGroup())
		if err != nil {
			return nil, rpcstatus.Error(err)
		}
		if owner == "" {
			return handler(ctx, req)
		}
		resp, err := newResponse(info.FullMethod)
		if err != nil {
			return nil, err
		}
		out := metadata.AppendToOutgoingContext(ctx, forwardedHeader, s.NodeName)
		err = s.nodeConn(owner).Invoke(out, info.FullMethod, req, resp)
		if lostDuringCall(err) {
			return nil, outcomeUnknown(owner, err)
		}
		if !notOwnerAnymore(err) || attempt == forwardAttempts {
			return resp, err
		}
		waitForChange(ctx, changed)
	}
}

// notOwnerAnymore reports an answer that says the call was not applied, so
// that it can be sent to the new owner: the node refused it as no longer
// the owner (NOT_LEADER), or it could not be reached at all (no connection,
// so nothing was sent). A connection that broke during the call is not one:
// the owner may have applied the call before it went away — recorded a
// delivery, applied an ack — and a second attempt at the new owner would
// answer for itself: an ack the first attempt applied comes back "receipt
// handle expired", and the consumer, told its ack failed, expects the
// message again while the queue goes on past it (the fault harness saw
// FIFO groups do exactly that). Such a call fails with its outcome unknown.
func notOwnerAnymore(err error) bool {
	if err == nil || status.Code(err) != codes.Unavailable {
		return false
	}
	switch rpcstatus.Reason(err) {
	case errs.ErrNotLeader.Reason:
		return true
	case "":
		return neverSent(err)
	}
	return false
}

// lostDuringCall reports a transport failure after the call went out: the
// owner may have applied it.
func lostDuringCall(err error) bool {
	return err != nil && status.Code(err) == codes.Unavailable && rpcstatus.Reason(err) == "" && !neverSent(err)
}

// neverSent reports a transport error raised before a call went out: the
// owner's address could not be resolved or dialled. gRPC tells these apart
// from a connection lost mid-call only in its messages.
func neverSent(err error) bool {
	msg := status.Convert(err).Message()
	return strings.Contains(msg, "while dialing") || strings.Contains(msg, "name resolver error") || strings.Contains(msg, "produced zero addresses")
}

// outcomeUnknown is the answer to a forwarded call whose owner went away
// during it.
func outcomeUnknown(owner string, err error) error {
	return rpcstatus.Error(errs.Wrapf(errs.ErrUnavailable, "node %s, which owned the queue's consumer state, went away during the call (%s); it may or may not have been applied: acks may need repeating, and messages it delivered come back after their visibility timeout",
		owner, status.Convert(err).Message()))
}

func waitForChange(ctx context.Context, changed <-chan struct{}) {
	select {
	case <-changed:
	case <-time.After(200 * time.Millisecond):
	case <-ctx.Done():
	}
}

// newResponse makes an empty response message of a method, from the proto
// registry.
func newResponse(fullMethod string) (proto.Message, error) {
	name := protoreflect.FullName(strings.ReplaceAll(strings.TrimPrefix(fullMethod, "/"), "/", "."))
	desc, err := protoregistry.GlobalFiles.FindDescriptorByName(name)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "forwarding %s: %v", fullMethod, err)
	}
	method, ok := desc.(protoreflect.MethodDescriptor)
	if !ok {
		return nil, status.Errorf(codes.Internal, "forwarding %s: not a method", fullMethod)
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByName(method.Output().FullName())
	if err != nil {
		return nil, status.Errorf(codes.Internal, "forwarding %s: %v", fullMethod, err)
	}
	return mt.New().Interface(), nil
}

// forwardStream is the stream interceptor that proxies a Subscribe to the
// owner of its queue's delivery shard: it reads the first message (which
// names the group), opens the same stream on the owner, and copies both
// ways until either side ends.
func (s *Server) forwardStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if info.FullMethod != dmsv1.ConsumerService_Subscribe_FullMethodName || forwardedCall(ss.Context()) {
		return handler(srv, ss)
	}
	first := &dmsv1.SubscribeRequest{}
	if err := ss.RecvMsg(first); err != nil {
		return err
	}
	owner, err := s.ownerOfGroupName(ss.Context(), first.GetStart().GetGroup())
	if err != nil {
		return rpcstatus.Error(err)
	}
	replay := &replayFirst{ServerStream: ss, first: first}
	if owner == "" {
		return handler(srv, replay)
	}
	ctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(ss.Context(), forwardedHeader, s.NodeName))
	defer cancel()
	desc := &grpc.StreamDesc{StreamName: "Subscribe", ServerStreams: true, ClientStreams: true}
	upstream, err := s.nodeConn(owner).NewStream(ctx, desc, info.FullMethod)
	if err != nil {
		return err
	}
	if err := upstream.SendMsg(first); err != nil {
		return upstream.RecvMsg(&dmsv1.SubscribeResponse{}) // the owner's reason
	}
	// Client to owner.
	go func() {
		for {
			req := &dmsv1.SubscribeRequest{}
			if err := ss.RecvMsg(req); err != nil {
				_ = upstream.CloseSend()
				return
			}
			if err := upstream.SendMsg(req); err != nil {
				return
			}
		}
	}()
	// Owner to client.
	for {
		resp := &dmsv1.SubscribeResponse{}
		if err := upstream.RecvMsg(resp); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if err := ss.SendMsg(resp); err != nil {
			return err
		}
	}
}

// replayFirst gives a stream handler the first message again, which the
// interceptor read to route the stream.
type replayFirst struct {
	grpc.ServerStream
	first proto.Message
}

func (r *replayFirst) RecvMsg(m any) error {
	if r.first != nil {
		proto.Merge(m.(proto.Message), r.first)
		r.first = nil
		return nil
	}
	return r.ServerStream.RecvMsg(m)
}
