package server

import (
	"context"
	"encoding/json"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/opendms/dms/gen/go/dms/cluster/audit/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/audit"
	"github.com/opendms/dms/services/authz"
	"github.com/opendms/dms/services/placement"
	"github.com/opendms/dms/services/rpcstatus"
	"github.com/opendms/dms/services/server/modules"
	"github.com/opendms/dms/services/storage"
	"github.com/opendms/dms/services/storage/logid"
)

// The audit trail (services/audit) is fed by one interceptor on both gRPC
// listeners, so that every front end is covered without code in the
// handlers: the native gRPC API directly, the REST APIs (native and DMS
// v1.0) through the internal listener they call with the principal's
// assertion, and the Kafka and AMQP adapters' admin calls likewise (as the
// system, their own principal). It records every management call and
// every call refused as unauthenticated or denied. A call another node
// forwarded was recorded there, with its final result.

// initAudit starts the trail and serves the audit API.
func (s *Server) initAudit(ctx context.Context) (modules.Stopper, error) {
	send := func(ctx context.Context, node string, recs []*dmsv1.AuditRecord) error {
		_, err := auditv1.NewAuditWriterServiceClient(s.nodeConn(node)).AppendRecords(ctx, &auditv1.AppendRecordsRequest{Records: recs})
		return err
	}
	t := audit.New(s.cfg.Audit, s.storageClient(), auditOwnership{s}, send, s.now, s.logger.With("component", "audit"))
	t.Start()
	s.audit = t
	h := audit.NewHandler(t)
	s.registerPublic(func(r grpc.ServiceRegistrar) { dmsv1.RegisterAuditServiceServer(r, h) })
	auditv1.RegisterAuditWriterServiceServer(s.internalGRPC, h)
	return modules.StopFunc(t.Stop), nil
}

// auditDamage records damaged data a storage engine found or repaired: an
// operator learns of it from the trail as well as from the log and the
// metrics.
func (s *Server) auditDamage(ev storage.DamageEvent) {
	action, reason := "storage/DamageFound", "DATA_DAMAGED"
	switch {
	case ev.Repaired:
		action, reason = "storage/DamageRepaired", "DATA_REPAIRED"
	case ev.Torn:
		reason = "TORN_TAIL"
	}
	params, _ := json.Marshal(map[string]any{"node": s.NodeName, "log": logid.Key(ev.Log), "from_offset": ev.From, "to_offset": ev.To, "quarantined_bytes": ev.Bytes})
	s.audit.Record(&dmsv1.AuditRecord{
		Time: timestamppb.New(s.now()), Principal: "system", Action: action, Resource: logid.Describe(ev.Log),
		Parameters: string(params), Allowed: true, Reason: reason,
	})
}

// auditOwnership: the owner of delivery shard 0 writes the trail.
type auditOwnership struct{ s *Server }

func (o auditOwnership) AuditOwner() (int64, string, bool) {
	st, ok := o.s.placement.Unit(placement.DeliveryShard(0))
	if !ok || !o.s.placement.Alive(st.GetOwner()) {
		return 0, "", false
	}
	return st.GetOwnerEpoch(), st.GetOwner(), st.GetOwner() == o.s.NodeName
}

// auditedMethods are the management calls, recorded whatever their result.
var auditedMethods = map[string]bool{
	dmsv1.QueueService_CreateQueue_FullMethodName:         true,
	dmsv1.QueueService_DeleteQueue_FullMethodName:         true,
	dmsv1.QueueService_AddPartitions_FullMethodName:       true,
	dmsv1.QueueService_UpdateQueue_FullMethodName:         true,
	dmsv1.QueueService_UpdateQueueLabels_FullMethodName:   true,
	dmsv1.QueueService_CreateConsumerGroup_FullMethodName: true,
	dmsv1.QueueService_DeleteConsumerGroup_FullMethodName: true,
	dmsv1.QueueService_UpdateProjectQuotas_FullMethodName: true,

	dmsv1.ConsumerService_RedriveDeadLetters_FullMethodName: true,
	dmsv1.ConsumerService_SeekConsumerGroup_FullMethodName:  true,

	dmsv1.IdentityService_CreateAccount_FullMethodName:   true,
	dmsv1.IdentityService_CreateProject_FullMethodName:   true,
	dmsv1.IdentityService_DeleteProject_FullMethodName:   true,
	dmsv1.IdentityService_CreateUser_FullMethodName:      true,
	dmsv1.IdentityService_SetUserPassword_FullMethodName: true,
	dmsv1.IdentityService_DeleteUser_FullMethodName:      true,
	dmsv1.IdentityService_GrantRole_FullMethodName:       true,
	dmsv1.IdentityService_RevokeRole_FullMethodName:      true,
	dmsv1.IdentityService_CreateAccessKey_FullMethodName: true,
	dmsv1.IdentityService_RotateAccessKey_FullMethodName: true,
	dmsv1.IdentityService_DeleteAccessKey_FullMethodName: true,
	dmsv1.IdentityService_CreateApiToken_FullMethodName:  true,
	dmsv1.IdentityService_RotateApiToken_FullMethodName:  true,
	dmsv1.IdentityService_RevokeApiToken_FullMethodName:  true,
	dmsv1.IdentityService_SetQueuePolicy_FullMethodName:  true,

	dmsv1.DataKeyService_RotateDataKey_FullMethodName:   true,
	dmsv1.DataKeyService_DestroyDataKeys_FullMethodName: true,

	"/dms.cluster.metadata.v1.MetadataService/ElectLeader":      true,
	"/dms.cluster.metadata.v1.MetadataService/ReassignReplicas": true,
}

// auditCall is what the authorization interceptor learns of a call, for
// its record.
type auditCall struct {
	mu        sync.Mutex
	principal authz.Principal
	known     bool // principal was set
	decidedBy string
	resource  string
}

type auditCallKey struct{}

// noteDecision tells the call's record who made it and what decided.
func noteDecision(ctx context.Context, p authz.Principal, decidedBy string, res authz.Resource) {
	c, _ := ctx.Value(auditCallKey{}).(*auditCall)
	if c == nil {
		return
	}
	c.mu.Lock()
	c.principal, c.known, c.decidedBy = p, true, decidedBy
	if r := res.String(); r != "" && c.resource == "" {
		c.resource = r
	}
	c.mu.Unlock()
}

// auditUnary is the audit interceptor of a listener: outside the
// authorization one, inside the status edge's, so that it sees refusals.
func (s *Server) auditUnary(public bool) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		// Only a node forwards, over the internal listener: the mark on
		// a public call is a client's, who does not choose to be left out.
		if s.audit == nil || (!public && isForwarded(ctx)) {
			return handler(ctx, req)
		}
		c := &auditCall{}
		resp, err := handler(context.WithValue(ctx, auditCallKey{}, c), req)
		s.auditRecord(ctx, public, info.FullMethod, req, c, err)
		return resp, err
	}
}

// auditStream records the streams refused: no stream is a management call.
func (s *Server) auditStream(public bool) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if s.audit == nil || (!public && isForwarded(ss.Context())) {
			return handler(srv, ss)
		}
		c := &auditCall{}
		ctx := context.WithValue(ss.Context(), auditCallKey{}, c)
		err := handler(srv, &auditedStream{ServerStream: ss, ctx: ctx})
		s.auditRecord(ss.Context(), public, info.FullMethod, nil, c, err)
		return err
	}
}

type auditedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (a *auditedStream) Context() context.Context { return a.ctx }

// isForwarded looks at one key: copying the whole metadata would cost
// every call several allocations.
func isForwarded(ctx context.Context) bool {
	return len(metadata.ValueFromIncomingContext(ctx, forwardedHeader)) > 0
}

// auditRecord records a call if it is a management call or was refused.
func (s *Server) auditRecord(ctx context.Context, public bool, method string, req any, c *auditCall, err error) {
	st := rpcstatus.New(err)
	code := st.Code()
	refused := code == codes.PermissionDenied || code == codes.Unauthenticated
	if !auditedMethods[method] && !refused {
		return
	}
	c.mu.Lock()
	p, known, decidedBy, resource := c.principal, c.known, c.decidedBy, c.resource
	c.mu.Unlock()
	if !known {
		switch {
		case !s.cfg.Auth.Enabled:
			p, decidedBy = authz.AnonymousPrincipal, "authentication off"
		default:
			// With authentication on, a call the interceptor did not decide
			// came without an assertion over the internal listener.
			p = authz.Principal{Kind: authz.System}
		}
	}
	msg, _ := req.(proto.Message)
	if resource == "" && msg != nil {
		if res, ok := authz.ResourceOf(msg); ok {
			resource = res.String()
		}
	}
	md, _ := metadata.FromIncomingContext(ctx)
	r := &dmsv1.AuditRecord{
		Time:          timestamppb.New(s.now()),
		Principal:     p.String(),
		AuthMethod:    p.Method,
		SourceAddress: sourceAddress(ctx, md, public),
		Action:        method,
		Resource:      resource,
		Parameters:    auditParameters(msg),
		Allowed:       err == nil,
		Code:          code.String(),
		RequestId:     first(md.Get("x-request-id")),
		DecidedBy:     decidedBy,
		Node:          s.NodeName,
	}
	if err != nil {
		r.Reason, r.ErrorMessage = rpcstatus.Reason(st.Err()), st.Message()
	}
	s.audit.Record(r)
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

// sourceAddress is the client's address: the peer's, or for a call the
// REST gateway made, the HTTP client's that it passed on.
func sourceAddress(ctx context.Context, md metadata.MD, public bool) string {
	if !public {
		if f := first(md.Get("x-forwarded-for")); f != "" {
			a, _, _ := strings.Cut(f, ",")
			return strings.TrimSpace(a)
		}
	}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return ""
}

// auditingDirectory is the identity directory given to a protocol front
// end that decides in its own code: Decide tells it of every denial, which
// it records with the front end's name before the action.
type auditingDirectory struct {
	authz.Directory
	s        *Server
	frontEnd string
}

// auditingDirectory returns the directory for a protocol front end.
func (s *Server) auditingDirectory(frontEnd string) authz.Directory {
	return auditingDirectory{Directory: s.identityCache, s: s, frontEnd: frontEnd}
}

// Denied implements authz.DenialObserver. Decide knows no connection, so
// the record has no source address.
func (a auditingDirectory) Denied(p authz.Principal, action authz.Action, res authz.Resource, d authz.Decision) {
	if a.s.audit == nil {
		return
	}
	st := rpcstatus.New(d.Err)
	a.s.audit.Record(&dmsv1.AuditRecord{
		Time: timestamppb.New(a.s.now()), Principal: p.String(), AuthMethod: p.Method,
		Action: a.frontEnd + "/" + string(action), Resource: res.String(),
		Code: st.Code().String(), Reason: rpcstatus.Reason(st.Err()), ErrorMessage: st.Message(),
		DecidedBy: d.DecidedBy, Node: a.s.NodeName,
	})
}

// auditLoginRefused returns what a protocol front end that checks
// passwords itself (AMQP) calls for every refused login: a record of
// action `{front end}/Login` by the `refused` principal, with the user
// name it gave and where from.
func (s *Server) auditLoginRefused(frontEnd string) func(remote, user, method string, err error) {
	return func(remote, user, method string, err error) {
		if s.audit == nil {
			return
		}
		st := rpcstatus.New(err)
		params, _ := json.Marshal(map[string]string{"user": user})
		s.audit.Record(&dmsv1.AuditRecord{
			Time: timestamppb.New(s.now()), Principal: "refused", AuthMethod: method, SourceAddress: remote,
			Action: frontEnd + "/Login", Parameters: string(params),
			Code: st.Code().String(), Reason: rpcstatus.Reason(st.Err()), ErrorMessage: st.Message(),
			DecidedBy: "authentication", Node: s.NodeName,
		})
	}
}

// secretFields are left out of recorded parameters wherever they appear.
var secretFields = map[protoreflect.Name]bool{
	"password": true, "new_password": true, "secret_key": true, "secret": true, "token": true,
	"signature": true, "credential": true,
}

// auditParameters writes a request as JSON without its secrets and
// without message bodies (every bytes field, and messages).
func auditParameters(msg proto.Message) string {
	if msg == nil {
		return ""
	}
	m := proto.Clone(msg)
	scrub(m.ProtoReflect())
	b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	if err != nil {
		return ""
	}
	return string(b)
}

func scrub(m protoreflect.Message) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case secretFields[fd.Name()] || fd.Kind() == protoreflect.BytesKind || fd.Name() == "messages" || fd.Name() == "body":
			m.Clear(fd)
		case fd.Kind() == protoreflect.MessageKind && fd.IsList():
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				scrub(l.Get(i).Message())
			}
		case fd.Kind() == protoreflect.MessageKind && fd.IsMap():
			if fd.MapValue().Kind() == protoreflect.MessageKind {
				v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool { scrub(mv.Message()); return true })
			}
		case fd.Kind() == protoreflect.MessageKind:
			scrub(v.Message())
		}
		return true
	})
}
