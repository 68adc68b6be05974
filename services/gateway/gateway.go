// Package gateway is the REST role: the public API over HTTP through
// grpc-gateway at /v1/, the DMS v1.0 compatible API at /v1.0/, and the
// OpenAPI document of the public API. Both REST surfaces are translations
// over the public gRPC API; they keep no state.
package gateway

import (
	"context"
	"log/slog"
	"net/http"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/gen/openapi"
	"github.com/opendms/dms/services/console"
	dmsv1compat "github.com/opendms/dms/services/gateway/dmsv1compat"
)

// Conns are the connections to the roles behind the public API.
type Conns struct {
	Metadata, Ingest, Delivery grpc.ClientConnInterface
}

// Config of the gateway role.
type Config struct {
	MaxQueuesPerProject int
	// AuthEnabled says whether requests need credentials, for the OpenAPI
	// document's security requirements.
	AuthEnabled bool
}

// Register adds the REST routes to mux.
func Register(ctx context.Context, mux *http.ServeMux, conns Conns, cfg Config, logger *slog.Logger) error {
	routes, err := routesOf(openapi.Document)
	if err != nil {
		return err
	}
	document, err := openAPI3(openapi.Document, buildVersion(), cfg.AuthEnabled)
	if err != nil {
		return err
	}
	gw := runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, &runtime.JSONPb{
			// Zero values are written, so that clients see every field;
			// unset messages are left out rather than written as null,
			// which the OpenAPI document does not allow for them.
			MarshalOptions:   protojson.MarshalOptions{EmitDefaultValues: true},
			UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
		}),
		runtime.WithRoutingErrorHandler(routingErrors(routes)),
		runtime.WithErrorHandler(withReason),
		// Who made the request, as the server's authentication put it in the
		// request's context (services/server/auth.go), goes to the roles.
		runtime.WithMetadata(func(ctx context.Context, r *http.Request) metadata.MD {
			md, _ := metadata.FromOutgoingContext(r.Context())
			return md
		}),
	)
	if err := dmsv1.RegisterQueueServiceHandlerClient(ctx, gw, dmsv1.NewQueueServiceClient(conns.Metadata)); err != nil {
		return err
	}
	if err := dmsv1.RegisterProducerServiceHandlerClient(ctx, gw, dmsv1.NewProducerServiceClient(conns.Ingest)); err != nil {
		return err
	}
	if err := dmsv1.RegisterConsumerServiceHandlerClient(ctx, gw, dmsv1.NewConsumerServiceClient(conns.Delivery)); err != nil {
		return err
	}
	// The identity API is the metadata role's.
	if err := dmsv1.RegisterIdentityServiceHandlerClient(ctx, gw, dmsv1.NewIdentityServiceClient(conns.Metadata)); err != nil {
		return err
	}
	// The cluster's status is the metadata role's view of the placement.
	if err := dmsv1.RegisterClusterServiceHandlerClient(ctx, gw, dmsv1.NewClusterServiceClient(conns.Metadata)); err != nil {
		return err
	}
	// The audit API reads the trail from storage: any node serves it.
	if err := dmsv1.RegisterAuditServiceHandlerClient(ctx, gw, dmsv1.NewAuditServiceClient(conns.Metadata)); err != nil {
		return err
	}
	// The data key API is the metadata role's.
	if err := dmsv1.RegisterDataKeyServiceHandlerClient(ctx, gw, dmsv1.NewDataKeyServiceClient(conns.Metadata)); err != nil {
		return err
	}
	// Message traces read logs through storage: any node serves them.
	if err := dmsv1.RegisterMessageTraceServiceHandlerClient(ctx, gw, dmsv1.NewMessageTraceServiceClient(conns.Metadata)); err != nil {
		return err
	}
	mux.Handle("/v1/", gw)
	dms := dmsv1compat.NewHandler(roleRouter{conns}, dmsv1compat.Config{MaxQueuesPerProject: cfg.MaxQueuesPerProject}, logger)
	for _, prefix := range dmsv1compat.Prefixes() {
		mux.Handle(prefix, dms)
	}
	// The web console: static files of a client of the API above.
	mux.Handle(console.Prefix, console.Handler())
	mux.Handle(fallbackPattern, fallback(mux, gw))
	mux.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(document)
	})
	return nil
}

// roleRouter sends each public service's calls to the role that serves it,
// so that the compat layer can take one connection.
type roleRouter struct{ conns Conns }

func (r roleRouter) pick(method string) grpc.ClientConnInterface {
	switch {
	case strings.HasPrefix(method, "/"+dmsv1.ProducerService_ServiceDesc.ServiceName+"/"):
		return r.conns.Ingest
	case strings.HasPrefix(method, "/"+dmsv1.ConsumerService_ServiceDesc.ServiceName+"/"):
		return r.conns.Delivery
	}
	return r.conns.Metadata
}

// Invoke implements grpc.ClientConnInterface.
func (r roleRouter) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	return r.pick(method).Invoke(ctx, method, args, reply, opts...)
}

// NewStream implements grpc.ClientConnInterface.
func (r roleRouter) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return r.pick(method).NewStream(ctx, desc, method, opts...)
}
