package scheduler

import (
	"flag"
	"time"
)

// Config of the scheduler role.
type Config struct {
	// TickInterval is how often an owned shard looks for due messages. A
	// message is released at most about this much after its time (plus the
	// time its batch takes), never before.
	TickInterval time.Duration `yaml:"tick_interval"`
	// ReleaseBatch is the most messages of one queue released by one publish.
	ReleaseBatch int `yaml:"release_batch"`
	// PrefetchAhead is how long before their time the bodies of due
	// messages are read from storage into memory, so that releasing them
	// does not wait for reads; PrefetchBytes bounds that memory.
	PrefetchAhead time.Duration `yaml:"prefetch_ahead"`
	PrefetchBytes int           `yaml:"prefetch_bytes"`
}

// RegisterFlags registers the flags of the scheduler role.
func (c *Config) RegisterFlags(f *flag.FlagSet) {
	f.DurationVar(&c.TickInterval, "scheduler.tick-interval", 10*time.Millisecond, "How often an owned timer shard looks for due scheduled messages.")
	f.IntVar(&c.ReleaseBatch, "scheduler.release-batch", 1000, "Most scheduled messages of one queue released in one batch (1 to 1000).")
	f.DurationVar(&c.PrefetchAhead, "scheduler.prefetch-ahead", 3*time.Second, "How long before their time the bodies of scheduled messages are read into memory (0: read when due).")
	f.IntVar(&c.PrefetchBytes, "scheduler.prefetch-bytes", 64<<20, "Most bytes of scheduled message bodies held in memory ahead of their time, per shard.")
}

func (c Config) withDefaults() Config {
	if c.TickInterval <= 0 {
		c.TickInterval = 10 * time.Millisecond
	}
	if c.ReleaseBatch <= 0 || c.ReleaseBatch > 1000 {
		c.ReleaseBatch = 1000
	}
	if c.PrefetchBytes <= 0 {
		c.PrefetchAhead = 0
	}
	return c
}
