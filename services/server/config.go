package server

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/opendms/dms/services/amqp"
	"github.com/opendms/dms/services/audit"
	"github.com/opendms/dms/services/delivery"
	"github.com/opendms/dms/services/kafka"
	"github.com/opendms/dms/services/metadata"
	"github.com/opendms/dms/services/scheduler"
	"github.com/opendms/dms/services/storage"
)

// Config of a dmsd process. Every field has a flag named after its place in
// the YAML file (`server.grpc_addr` is -server.grpc-addr); a YAML file named
// by -config.file sets fields first and flags given on the command line win.
type Config struct {
	Target string `yaml:"target"`

	Server   ListenConfig   `yaml:"server"`
	TLS      TLSConfig      `yaml:"tls"`
	Internal InternalConfig `yaml:"internal"`
	Node     NodeConfig     `yaml:"node"`
	Cluster  ClusterConfig  `yaml:"cluster"`
	Log      LogConfig      `yaml:"log"`
	Runtime  RuntimeConfig  `yaml:"runtime"`

	Etcd      EtcdConfig       `yaml:"etcd"`
	Metadata  metadata.Config  `yaml:"metadata"`
	Delivery  delivery.Config  `yaml:"delivery"`
	Storage   storage.Config   `yaml:"storage"`
	Scheduler scheduler.Config `yaml:"scheduler"`
	Kafka     kafka.Config     `yaml:"kafka"`
	AMQP      amqp.Config      `yaml:"amqp"`
	Protocols ProtocolsConfig  `yaml:"protocols"`
	Auth      AuthConfig       `yaml:"auth"`
	Audit     audit.Config     `yaml:"audit"`
	Telemetry TelemetryConfig  `yaml:"telemetry"`
}

// TelemetryConfig says what is recorded for message traces and metrics.
type TelemetryConfig struct {
	// RecordTraces stores who produced each batch and who received each
	// delivery (one entry per batch or receive) for GetMessageTrace.
	RecordTraces bool `yaml:"record_traces"`
	// QueueLabels labels the domain metrics by queue and group; off, they
	// are summed per node, for clusters with very many queues.
	QueueLabels bool `yaml:"queue_labels"`
}

// AuthConfig turns authentication and authorization on.
type AuthConfig struct {
	// Enabled makes every public API and protocol authenticate its callers
	// and authorize each call (services/authz); off, anyone who reaches a
	// listener may do anything, so dmsd then binds loopback addresses only.
	Enabled bool `yaml:"enabled"`
	// AllowAnonymous lets dmsd bind non-loopback addresses with
	// authentication off.
	AllowAnonymous bool `yaml:"allow_anonymous"`
	// TokenTTL is the life of the tokens POST /v3/auth/tokens issues.
	TokenTTL time.Duration `yaml:"token_ttl"`
	// Region is the region named in the service catalog of a token.
	Region string `yaml:"region"`
}

// ProtocolsConfig holds what the protocol front ends (Kafka) share.
type ProtocolsConfig struct {
	// DefaultProject is the project (a 32-hex id) whose queues a protocol
	// connection sees while authentication is off.
	DefaultProject string `yaml:"default_project"`
}

// ListenConfig says where the process listens.
type ListenConfig struct {
	// GRPCAddr serves the public gRPC API to clients.
	GRPCAddr string `yaml:"grpc_addr"`
	// HTTPAddr serves the REST APIs, /healthz, /metrics and /openapi.json.
	HTTPAddr string `yaml:"http_addr"`
	// InternalGRPCAddr serves the roles' cluster APIs (storage, ingest,
	// delivery, scheduler, metadata) to the other dmsd processes. Clients
	// never need it; keep it on a private network.
	InternalGRPCAddr string `yaml:"internal_grpc_addr"`
	// InternalAdvertiseAddr is the internal address other nodes dial, when
	// it is not the listening one (a proxy, a NAT, 0.0.0.0).
	InternalAdvertiseAddr string `yaml:"internal_advertise_addr"`
}

// NodeConfig names this process in the cluster and says where its data is.
type NodeConfig struct {
	DataDir string `yaml:"data_dir"`
	// Name is the node's stable name in the cluster; empty takes the name
	// kept in the data directory, or the host name the first time.
	Name string `yaml:"name"`
	// Zone is the failure domain the node runs in; replicas are spread
	// across zones first.
	Zone string `yaml:"zone"`
	// SessionTTL is how long the node's etcd lease lives without
	// keep-alives: how long a node that is paused or cut off from etcd keeps
	// its leaderships (it stops acting on them sooner, by its own clock).
	// A node that dies is noticed sooner: see metadata's controller.
	SessionTTL time.Duration `yaml:"session_ttl"`
}

// ClusterConfig are settings fixed when a cluster is created (by its first
// node); later nodes take the cluster's.
type ClusterConfig struct {
	// DeliveryShards and SchedulerShards split the consumer groups and the
	// timers of all queues into shards, each owned by one node at a time.
	DeliveryShards  int `yaml:"delivery_shards"`
	SchedulerShards int `yaml:"scheduler_shards"`
	// SecretFile holds the secret the nodes show each other on the
	// internal listener (one per line: the first is sent, every one is
	// accepted, so that a secret rotates by rolling restarts). Empty with
	// -auth.enabled: a secret generated once and kept in etcd.
	SecretFile string `yaml:"secret_file"`
}

// TLSConfig puts TLS on every public listener: gRPC, HTTP, Kafka, AMQP.
type TLSConfig struct {
	// CertFile and KeyFile are PEM files, read again when they change.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ClientCAFile holds the CAs of accepted client certificates.
	ClientCAFile string `yaml:"client_ca_file"`
	// ClientAuth is none, request (verified when sent) or require.
	ClientAuth string `yaml:"client_auth"`
}

// InternalConfig secures the internal listener between the nodes.
type InternalConfig struct {
	TLS InternalTLSConfig `yaml:"tls"`
}

// InternalTLSConfig is the nodes' mutual TLS: each node serves and dials
// with its certificate, and accepts the peers whose certificates the
// cluster CA signed.
type InternalTLSConfig struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	CAFile   string `yaml:"ca_file"`
}

// LogConfig configures logging.
type LogConfig struct {
	Level string `yaml:"level"`
}

// RuntimeConfig tunes the Go runtime.
type RuntimeConfig struct {
	// GCPercent is the Go garbage collector's target; see cmd/dmsd.
	GCPercent int `yaml:"gc_percent"`
}

// EtcdConfig chooses between the embedded etcd and an external cluster.
type EtcdConfig struct {
	Endpoints string `yaml:"endpoints"`
	// EmbedClientAddr is where the embedded etcd listens for clients; port 0
	// picks a free one, printed at startup so other processes can join.
	EmbedClientAddr string `yaml:"embed_client_addr"`
	EmbedPeerAddr   string `yaml:"embed_peer_addr"`
	// CAFile, CertFile and KeyFile put TLS on the connections to an
	// external etcd: the CA that signed its server certificates, and this
	// node's client certificate when etcd asks for one (--client-cert-auth).
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// RegisterFlags registers every flag of the process. Flags from before the
// dotted names (-grpc-addr, -http-addr, -data-dir) remain as aliases.
func (c *Config) RegisterFlags(f *flag.FlagSet) {
	f.StringVar(&c.Target, "target", "all", "Comma-separated roles to run: "+strings.Join(KnownTargets(), ", ")+".")
	f.StringVar(&c.Server.GRPCAddr, "server.grpc-addr", "127.0.0.1:9090", "Address of the public gRPC listener shared by all roles.")
	f.StringVar(&c.Server.HTTPAddr, "server.http-addr", "127.0.0.1:8080", "Address of the HTTP listener: REST APIs, /healthz, /metrics, /openapi.json.")
	f.StringVar(&c.Server.InternalGRPCAddr, "server.internal-grpc-addr", "127.0.0.1:0", "Address of the internal gRPC listener where the roles serve each other (port 0 picks a free one; the address is registered in etcd); other dmsd processes must reach it, clients never need it.")
	f.StringVar(&c.Server.InternalAdvertiseAddr, "server.internal-advertise-addr", "", "Internal address the other nodes dial, when it differs from the listening one (behind a proxy or NAT, or when listening on 0.0.0.0); empty advertises the listening address.")
	f.StringVar(&c.TLS.CertFile, "tls.cert-file", "", "PEM certificate chain of the public listeners (gRPC, HTTP, Kafka, AMQP): with -tls.key-file they serve TLS only. Read again when the file changes; no restart.")
	f.StringVar(&c.TLS.KeyFile, "tls.key-file", "", "PEM private key of -tls.cert-file; read again when it changes.")
	f.StringVar(&c.TLS.ClientCAFile, "tls.client-ca-file", "", "PEM CAs whose client certificates the public listeners accept (see -tls.client-auth).")
	f.StringVar(&c.TLS.ClientAuth, "tls.client-auth", "none", "Client certificates on the public listeners: none; request (verified against -tls.client-ca-file when a client sends one); require (a client without one is refused at the handshake). Certificates admit connections; callers still authenticate with tokens, AK/SK or SASL.")
	f.StringVar(&c.Internal.TLS.CertFile, "internal.tls.cert-file", "", "PEM certificate of this node on the internal listener (mutual TLS between nodes): served, and shown when dialing other nodes. Read again when it changes.")
	f.StringVar(&c.Internal.TLS.KeyFile, "internal.tls.key-file", "", "PEM private key of -internal.tls.cert-file.")
	f.StringVar(&c.Internal.TLS.CAFile, "internal.tls.ca-file", "", "PEM cluster CA: the internal listener accepts only peers whose certificate it signed, and nodes dial only peers it signed (names are not checked).")
	f.StringVar(&c.Cluster.SecretFile, "cluster.secret-file", "", "File of the cluster secret every node sends on the internal listener and checks (one per line: the first is sent, all are accepted, for rotation). Empty with -auth.enabled and no -internal.tls.*: a secret generated once and kept in etcd.")
	f.StringVar(&c.Node.DataDir, "node.data-dir", "data", "Directory for the embedded etcd, the node's identity and the storage role's logs.")
	f.StringVar(&c.Node.Name, "node.name", "", "Stable name of this node in the cluster; empty keeps the name stored in the data directory, or takes the host name the first time.")
	f.StringVar(&c.Node.Zone, "node.zone", "", "Zone (failure domain) of this node; replicas are spread across zones first.")
	f.DurationVar(&c.Node.SessionTTL, "node.session-ttl", 5*time.Second, "Life of the node's etcd lease without keep-alives (whole seconds, at least 2s): how long a paused or partitioned node keeps its leaderships before they move.")
	f.IntVar(&c.Cluster.DeliveryShards, "cluster.delivery-shards", 8, "Shards of consumer-group state, each owned by one node; fixed when the cluster is created.")
	f.IntVar(&c.Cluster.SchedulerShards, "cluster.scheduler-shards", 4, "Shards of scheduled messages, each owned by one node; fixed when the cluster is created.")
	f.StringVar(&c.Log.Level, "log.level", "info", "Log level: debug, info, warn or error.")
	// A message service allocates per message and keeps little live heap:
	// collecting at 4x the live heap instead of 2x cut GC work enough to lift
	// end-to-end throughput from ~83k to ~100k msgs/s (dms-bench, 1 KiB) for
	// about 70 MB more RSS under load. GOGC in the environment wins.
	f.IntVar(&c.Runtime.GCPercent, "runtime.gc-percent", 400, "Go GC target percentage (GOGC) unless the GOGC environment variable is set; use GOMEMLIMIT to cap memory.")
	f.StringVar(&c.Etcd.Endpoints, "etcd.endpoints", "", "Comma-separated endpoints of an external etcd cluster; empty runs an embedded etcd in the data directory.")
	f.StringVar(&c.Etcd.EmbedClientAddr, "etcd.embed.client-addr", "127.0.0.1:0", "Client address of the embedded etcd.")
	f.StringVar(&c.Etcd.EmbedPeerAddr, "etcd.embed.peer-addr", "127.0.0.1:0", "Peer address of the embedded etcd.")
	f.StringVar(&c.Etcd.CAFile, "etcd.ca-file", "", "PEM CA of the external etcd's server certificates: the connections to -etcd.endpoints use TLS.")
	f.StringVar(&c.Etcd.CertFile, "etcd.cert-file", "", "PEM client certificate this node shows the external etcd (with -etcd.key-file), when etcd requires client certificates.")
	f.StringVar(&c.Etcd.KeyFile, "etcd.key-file", "", "PEM private key of -etcd.cert-file.")
	for alias, name := range FlagAliases {
		fl := f.Lookup(name)
		f.Var(fl.Value, alias, "Deprecated alias of -"+name+".")
	}
	c.Metadata.RegisterFlags(f)
	c.Delivery.RegisterFlags(f)
	c.Storage.RegisterFlags(f)
	c.Scheduler.RegisterFlags(f)
	c.Kafka.RegisterFlags(f)
	c.AMQP.RegisterFlags(f)
	f.BoolVar(&c.Telemetry.RecordTraces, "telemetry.record-traces", true, "Record who produced each batch and who received each delivery (one entry per batch or receive, in logs written anyway) for message traces (GetMessageTrace); off, traces still show every step but not who.")
	f.BoolVar(&c.Telemetry.QueueLabels, "telemetry.queue-labels", true, "Label the domain metrics (dms_messaging_*) by queue and consumer group; turn off on clusters with very many queues to keep the number of series bounded (the metrics are then per node).")
	f.BoolVar(&c.Auth.Enabled, "auth.enabled", false, "Authenticate every caller (Keystone-style tokens from POST /v3/auth/tokens, X-Auth-Token, AK/SK-signed requests, authorization: Bearer) and authorize every call by project roles. On first start it creates the account Default, its administrator admin (password from DMS_ADMIN_PASSWORD, or generated into {data-dir}/admin-password) and the project of -protocols.default-project.")
	f.BoolVar(&c.Auth.AllowAnonymous, "auth.allow-anonymous", false, "Allow listening on non-loopback addresses with authentication off: anyone who reaches a port may then do anything.")
	f.DurationVar(&c.Auth.TokenTTL, "auth.token-ttl", 24*time.Hour, "Life of the tokens that POST /v3/auth/tokens issues.")
	f.DurationVar(&c.Audit.Retention, "audit.retention", audit.DefaultRetention, "How long the audit trail keeps its records (management calls and denied requests); 0 keeps them forever.")
	f.StringVar(&c.Auth.Region, "auth.region", "local", "Region named in the service catalog of the tokens that POST /v3/auth/tokens issues.")
	f.StringVar(&c.Protocols.DefaultProject, "protocols.default-project", DefaultProject, "Project (32-hex id) whose queues Kafka connections see as topics while authentication is off, and the project of a Kafka SASL user name without @{project} with it on.")
}

// DefaultProject is the project protocol connections act in by default:
// the one the README's examples use, so that queues made there with curl
// are Kafka topics too.
const DefaultProject = "0123456789abcdef0123456789abcdef"

// FlagAliases maps the flag names of earlier releases to today's.
var FlagAliases = map[string]string{
	"grpc-addr": "server.grpc-addr",
	"http-addr": "server.http-addr",
	"data-dir":  "node.data-dir",
	// The scheduler's shards are the cluster's since they are placed.
	"scheduler.shards": "cluster.scheduler-shards",
}

// legacyYAML holds the top-level keys of earlier configuration files.
type legacyYAML struct {
	DataDir   *string `yaml:"data_dir"`
	GRPCAddr  *string `yaml:"grpc_addr"`
	HTTPAddr  *string `yaml:"http_addr"`
	LogLevel  *string `yaml:"log_level"`
	GCPercent *int    `yaml:"gc_percent"`
}

// Parse fills c from defaults, then the YAML file named by -config.file (if
// any), then the command-line flags.
func (c *Config) Parse(args []string) error {
	f := flag.NewFlagSet("dmsd", flag.ContinueOnError)
	configFile := f.String("config.file", "", "YAML configuration file; command-line flags override it.")
	c.RegisterFlags(f)
	if err := f.Parse(args); err != nil {
		return err
	}
	if *configFile == "" {
		return nil
	}
	data, err := os.ReadFile(*configFile)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	var legacy legacyYAML
	if err := yaml.Unmarshal(data, &legacy); err != nil {
		return fmt.Errorf("config: %s: %w", *configFile, err)
	}
	for _, kv := range []struct {
		from *string
		to   *string
	}{{legacy.DataDir, &c.Node.DataDir}, {legacy.GRPCAddr, &c.Server.GRPCAddr}, {legacy.HTTPAddr, &c.Server.HTTPAddr}, {legacy.LogLevel, &c.Log.Level}} {
		if kv.from != nil {
			*kv.to = *kv.from
		}
	}
	if legacy.GCPercent != nil {
		c.Runtime.GCPercent = *legacy.GCPercent
	}
	if err := yaml.Unmarshal(data, c); err != nil {
		return fmt.Errorf("config: %s: %w", *configFile, err)
	}
	// Flags given explicitly win over the file.
	return f.Parse(args)
}
