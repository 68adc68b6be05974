package kafka

import (
	"flag"
	"time"
)

// Config of the Kafka front end.
type Config struct {
	// Addr is where the Kafka listener listens; empty disables it.
	Addr string `yaml:"addr"`
	// AdvertisedAddr is the address the node gives Kafka clients in
	// Metadata (host:port); empty advertises the listening address.
	AdvertisedAddr string `yaml:"advertised_addr"`
	// AutoCreateTopics creates a topic that a producer or a Metadata
	// request names and that does not exist, as Kafka's
	// auto.create.topics.enable does.
	AutoCreateTopics bool `yaml:"auto_create_topics"`
	// DefaultTopicMode is the queue mode of topics created without the
	// dms.queue.mode config: KAFKA_HA or KAFKA_HT.
	DefaultTopicMode string `yaml:"default_topic_mode"`
	// MaxRequestBytes bounds one request frame, as Kafka's
	// socket.request.max.bytes does; a longer frame closes the connection.
	MaxRequestBytes int `yaml:"max_request_bytes"`
	// MaxMessageBytes bounds one record batch of a Produce, as Kafka's
	// max.message.bytes does; a larger batch is refused with
	// MESSAGE_TOO_LARGE and nothing of it is stored.
	MaxMessageBytes int `yaml:"max_message_bytes"`
	// IdleTimeout closes a connection that sent nothing for this long, as
	// Kafka's connections.max.idle.ms does.
	IdleTimeout time.Duration `yaml:"idle_timeout"`

	// GroupInitialRebalanceDelay holds the first rebalance of an empty
	// consumer group, as Kafka's group.initial.rebalance.delay.ms does.
	GroupInitialRebalanceDelay time.Duration `yaml:"group_initial_rebalance_delay"`
	// GroupMinSessionTimeout and GroupMaxSessionTimeout bound the session
	// timeouts consumer group members ask for.
	GroupMinSessionTimeout time.Duration `yaml:"group_min_session_timeout"`
	GroupMaxSessionTimeout time.Duration `yaml:"group_max_session_timeout"`
	// GroupCheckpointBytes is how much a delivery shard's Kafka group log
	// grows between checkpoints, which bound its replay.
	GroupCheckpointBytes int64 `yaml:"group_checkpoint_bytes"`
	// GroupOffsetsRetention deletes an empty consumer group with its
	// committed offsets this long after it became empty and its last
	// commit, as Kafka's offsets.retention.minutes; 0 keeps them.
	GroupOffsetsRetention time.Duration `yaml:"group_offsets_retention"`

	// DefaultProject is the project Kafka connections act in while
	// authentication is off, and with it on the project of a SASL user
	// name that names none; set from -protocols.default-project.
	DefaultProject string `yaml:"-"`
}

// RegisterFlags registers the flags of the Kafka front end.
func (c *Config) RegisterFlags(f *flag.FlagSet) {
	f.StringVar(&c.Addr, "kafka.addr", "127.0.0.1:9092", "Address of the Kafka protocol listener (HOST:PORT); empty disables it.")
	f.StringVar(&c.AdvertisedAddr, "kafka.advertised-addr", "", "Kafka address this node gives clients in Metadata responses; empty advertises the listener's address.")
	f.BoolVar(&c.AutoCreateTopics, "kafka.auto-create-topics", true, "Create a topic (a KAFKA_HA or KAFKA_HT queue) when a producer or a Metadata request names one that does not exist.")
	f.StringVar(&c.DefaultTopicMode, "kafka.default-topic-mode", "KAFKA_HA", "Queue mode of Kafka topics created without the dms.queue.mode topic config: KAFKA_HA (acknowledged once durable on the in-sync replicas) or KAFKA_HT (acknowledged after the leader's write).")
	// Kafka's socket.request.max.bytes default.
	f.IntVar(&c.MaxRequestBytes, "kafka.max-request-bytes", 100<<20, "Largest Kafka request frame; a client sending a larger one is disconnected.")
	// Kafka's max.message.bytes default (1 MiB plus a batch header); at most
	// storage's batch limit (8 MiB).
	f.IntVar(&c.MaxMessageBytes, "kafka.max-message-bytes", 1048588, "Largest record batch a Kafka producer may send (the topics' max.message.bytes); larger batches are refused with MESSAGE_TOO_LARGE.")
	// Kafka's connections.max.idle.ms default: 10 minutes.
	f.DurationVar(&c.IdleTimeout, "kafka.idle-timeout", 10*time.Minute, "Close a Kafka connection idle for this long.")
	// Kafka's defaults: 3 s, 6 s and 30 min.
	f.DurationVar(&c.GroupInitialRebalanceDelay, "kafka.group-initial-rebalance-delay", 3*time.Second, "Hold the first rebalance of an empty consumer group this long, so that members starting together join one generation.")
	f.DurationVar(&c.GroupMinSessionTimeout, "kafka.group-min-session-timeout", 6*time.Second, "Shortest session timeout a consumer group member may ask for.")
	f.DurationVar(&c.GroupMaxSessionTimeout, "kafka.group-max-session-timeout", 30*time.Minute, "Longest session timeout a consumer group member may ask for.")
	// Kafka's offsets.retention.minutes default: 7 days.
	f.DurationVar(&c.GroupOffsetsRetention, "kafka.group-offsets-retention", 7*24*time.Hour, "Delete an empty Kafka consumer group with its committed offsets this long after it became empty and its last commit; 0 keeps them forever.")
	f.Int64Var(&c.GroupCheckpointBytes, "kafka.group-checkpoint-bytes", 16<<20, "Bytes a delivery shard's Kafka consumer group log grows between two checkpoints (a checkpoint bounds the replay when a node takes the shard over).")
}
