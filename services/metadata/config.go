// Package metadata is the metadata role: the admin API for queues and
// consumer groups, and the catalog it keeps in etcd with quotas enforced by
// etcd transactions.
package metadata

import (
	"flag"
	"time"
)

// Config of the metadata role.
type Config struct {
	MaxQueuesPerProject int           `yaml:"max_queues_per_project"`
	MaxGroupsPerQueue   int           `yaml:"max_groups_per_queue"`
	DefaultPartitions   int           `yaml:"default_partitions"`
	MaxPartitions       int           `yaml:"max_partitions"`
	DefaultRetention    time.Duration `yaml:"default_retention"`
	// DefaultReplicationFactor and MinInsyncReplicas come from the storage
	// role's flags (-storage.replication-factor, -storage.min-insync-replicas);
	// the server copies them here.
	DefaultReplicationFactor int `yaml:"-"`
	MinInsyncReplicas        int `yaml:"-"`
}

// RegisterFlags registers the flags of the metadata role with their defaults.
func (c *Config) RegisterFlags(f *flag.FlagSet) {
	f.IntVar(&c.MaxQueuesPerProject, "metadata.max-queues-per-project", 30, "Queue quota of each project.")
	f.IntVar(&c.MaxGroupsPerQueue, "metadata.max-groups-per-queue", 3, "Consumer group quota of each queue.")
	// Three partitions let a NORMAL queue use both cores of a small machine
	// for appends and consumption while keeping per-partition batches large.
	f.IntVar(&c.DefaultPartitions, "metadata.default-partitions", 3, "Partitions of a NORMAL queue when the request names none.")
	f.IntVar(&c.MaxPartitions, "metadata.max-partitions", 64, "Most partitions a queue may have.")
	f.DurationVar(&c.DefaultRetention, "metadata.default-retention", 72*time.Hour, "Retention of a queue when the request names none; also the maximum.")
}
