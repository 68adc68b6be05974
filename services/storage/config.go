// Package storage is the storage role: it keeps every log (queue partitions
// and the internal logs of other roles) in partitionlog files under its data
// directory and serves the internal StorageService.
package storage

import (
	"flag"
	"time"
)

// Config of the storage role.
type Config struct {
	// Dir is set by the server from its data directory.
	Dir          string `yaml:"-"`
	SegmentBytes int64  `yaml:"segment_bytes"`
	// InternalSegmentBytes is the segment size of other roles' logs
	// (delivery state, dead letters): smaller, so that a trim after a
	// checkpoint frees space soon.
	InternalSegmentBytes int64         `yaml:"internal_segment_bytes"`
	AsyncFlush           time.Duration `yaml:"async_flush_interval"`
	RetentionInterval    time.Duration `yaml:"retention_check_interval"`
	// EncryptionKeyFile turns on encryption at rest (see keys.go).
	EncryptionKeyFile string `yaml:"encryption_key_file"`
	// ReplicationFactor is the default number of copies of a queue's
	// partitions, and the number of copies of the delivery and scheduler
	// shards; MinInsyncReplicas the default minimum of in-sync replicas
	// below which writes are refused (never more than the replicas).
	ReplicationFactor int `yaml:"replication_factor"`
	MinInsyncReplicas int `yaml:"min_insync_replicas"`
	// ReplicaLagTime is how long a follower may stay behind the leader
	// before the leader drops it from the in-sync replicas.
	ReplicaLagTime time.Duration `yaml:"replica_lag_time"`
	// ScrubBytesPerSecond bounds how fast the scrubber reads sealed
	// segments to verify their checksums; 0 turns it off.
	ScrubBytesPerSecond int64 `yaml:"scrub_bytes_per_second"`
	// ScrubInterval is the rest between two scrub passes over every log,
	// so that an idle node with little data does not reread it all the
	// time.
	ScrubInterval time.Duration `yaml:"scrub_interval"`
}

// RegisterFlags registers the flags of the storage role with their defaults.
func (c *Config) RegisterFlags(f *flag.FlagSet) {
	f.Int64Var(&c.SegmentBytes, "storage.segment-bytes", 64<<20, "Size at which a queue partition rolls to a new segment file.")
	f.Int64Var(&c.InternalSegmentBytes, "storage.internal-segment-bytes", 8<<20, "Size at which an internal log (delivery state, dead letters) rolls to a new segment file.")
	f.DurationVar(&c.AsyncFlush, "storage.async-flush-interval", 200*time.Millisecond, "How often logs of KAFKA_HT queues are flushed to disk.")
	f.DurationVar(&c.RetentionInterval, "storage.retention-check-interval", time.Minute, "How often expired segments are looked for.")
	f.IntVar(&c.ReplicationFactor, "storage.replication-factor", 1, "Default number of nodes keeping each partition (a queue may ask for another), and the copies of the delivery and scheduler shards. 1 suits a single node; a cluster typically uses 3.")
	f.IntVar(&c.MinInsyncReplicas, "storage.min-insync-replicas", 2, "Writes are refused while fewer replicas than this (at most the replication factor) are in sync.")
	f.DurationVar(&c.ReplicaLagTime, "storage.replica-lag-time", 5*time.Second, "How long a follower may lag behind its leader before it leaves the in-sync replicas.")
	f.Int64Var(&c.ScrubBytesPerSecond, "storage.scrub-bytes-per-second", 8<<20, "How fast the background scrubber reads sealed segments to verify their checksums (the last segment of each log is verified at every start); damage it finds is quarantined and repaired. 8 MiB/s reads 1 TB in about 36 hours. 0 turns the scrubber off.")
	f.DurationVar(&c.ScrubInterval, "storage.scrub-interval", time.Hour, "Rest between two scrub passes over every log.")
	f.StringVar(&c.EncryptionKeyFile, "storage.encryption-key-file", "", "Turns on encryption at rest (AES-256-GCM per record batch): a file of keys, one id:base64key entry per line (id a decimal number, key 32 bytes); the last line's key encrypts new data, the others stay readable. "+keysEnv+" may hold the same entries instead. Off when neither is set.")
}
