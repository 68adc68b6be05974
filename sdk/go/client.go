package dms

import (
	"context"
	"log/slog"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
)

// DefaultMaxMessageSize is the largest gRPC message a Client sends or
// receives unless WithMaxMessageSize says otherwise. It is the server's own
// limit, and leaves room for a full batch (8 MiB of messages) plus framing.
const DefaultMaxMessageSize = 16 << 20

// Client is a connection to a DMS server. It is safe for concurrent use;
// create one per process and target, and Close it when done. Resources live
// in projects: call Project to get the handle that manages and uses them.
type Client struct {
	conn   *grpc.ClientConn
	queues dmsv1.QueueServiceClient
	prod   dmsv1.ProducerServiceClient
	cons   dmsv1.ConsumerServiceClient
	logger *slog.Logger

	listPageSize int32
}

// Option configures a Client.
type Option func(*clientOptions)

type clientOptions struct {
	creds          credentials.TransportCredentials
	dialOpts       []grpc.DialOption
	maxMessageSize int
	logger         *slog.Logger
	listPageSize   int32
}

// WithTransportCredentials sets the transport security, for example
// credentials.NewTLS. Without it the connection is not encrypted, which suits
// a server on the local host.
func WithTransportCredentials(creds credentials.TransportCredentials) Option {
	return func(o *clientOptions) { o.creds = creds }
}

// WithDialOptions adds gRPC dial options (interceptors, per-RPC credentials,
// keepalive, ...). They are applied after the options this package sets, so
// they win where both set the same thing.
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(o *clientOptions) { o.dialOpts = append(o.dialOpts, opts...) }
}

// WithToken makes every call carry `authorization: Bearer token`, for a
// server with authentication on: a token from POST /v3/auth/tokens (in its
// X-Subject-Token header) or an API token from IdentityService.CreateApiToken.
// Without WithTransportCredentials the token travels in the clear: use TLS
// to reach a server on another host.
func WithToken(token string) Option {
	return func(o *clientOptions) {
		o.dialOpts = append(o.dialOpts, grpc.WithPerRPCCredentials(bearerToken(token)))
	}
}

// bearerToken is gRPC per-call credentials of a fixed token.
type bearerToken string

func (t bearerToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(t)}, nil
}

// RequireTransportSecurity is false so that a server on the local host can
// be used without TLS, as the rest of the client allows.
func (t bearerToken) RequireTransportSecurity() bool { return false }

// WithMaxMessageSize sets the largest gRPC message sent or received, in
// bytes; DefaultMaxMessageSize when not set.
func WithMaxMessageSize(n int) Option {
	return func(o *clientOptions) { o.maxMessageSize = n }
}

// WithLogger sets where the client, and the producers and consumers built on
// it, report what happens in the background (retries, failed acks, handler
// panics). Nothing is logged without it.
func WithLogger(l *slog.Logger) Option {
	return func(o *clientOptions) { o.logger = l }
}

// Dial returns a Client for the DMS server at target, a gRPC target such as
// "localhost:9090" or "dns:///dms.example.com:9090". The connection is made
// in the background: Dial does not wait for it, and a call made while the
// server cannot be reached fails with code Unavailable. ctx bounds only the
// setup done by Dial itself.
func Dial(ctx context.Context, target string, opts ...Option) (*Client, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	o := clientOptions{creds: insecure.NewCredentials(), maxMessageSize: DefaultMaxMessageSize, listPageSize: 100}
	for _, opt := range opts {
		opt(&o)
	}
	dialOpts := append([]grpc.DialOption{
		grpc.WithTransportCredentials(o.creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(o.maxMessageSize), grpc.MaxCallSendMsgSize(o.maxMessageSize)),
	}, o.dialOpts...)
	conn, err := grpc.NewClient(target, dialOpts...)
	if err != nil {
		return nil, err
	}
	conn.Connect()
	logger := o.logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Client{
		conn:   conn,
		queues: dmsv1.NewQueueServiceClient(conn),
		prod:   dmsv1.NewProducerServiceClient(conn),
		cons:   dmsv1.NewConsumerServiceClient(conn),
		logger: logger,

		listPageSize: o.listPageSize,
	}, nil
}

// Close closes the connection. Producers and consumers built on the client
// should be closed or stopped first; calls still running fail with code
// Canceled.
func (c *Client) Close() error { return c.conn.Close() }

// Project returns the handle of a project: every queue, consumer group and
// message belongs to one. The handle is cheap, holds no state beyond the
// project id and is safe for concurrent use. The server checks the id (1 to
// 64 characters of [A-Za-z0-9_-]) on every call.
func (c *Client) Project(id string) *Project {
	return &Project{client: c, id: id}
}

// Project is a project of a Client: it manages the project's queues and
// consumer groups, sends messages to its queues and receives them for its
// consumer groups. Queues and groups are named by display name or by id
// wherever a method takes one.
type Project struct {
	client *Client
	id     string
}

// ID returns the project id.
func (p *Project) ID() string { return p.id }

func (p *Project) resource() string { return "projects/" + p.id }

func (p *Project) queueResource(queue string) string {
	return "projects/" + p.id + "/queues/" + queue
}

func (p *Project) groupResource(queue, group string) string {
	return "projects/" + p.id + "/queues/" + queue + "/groups/" + group
}
