package delivery

import (
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"
)

// Config of the delivery role.
type Config struct {
	// RetryDelays is how long a REDELIVER ack hides a message, by the
	// message's failed attempts so far: the first retry waits the first
	// delay, and so on; the last repeats.
	RetryDelays Delays `yaml:"retry_delays"`
	// StateHistoryCheckpoints is how many checkpoints of a group's state
	// log are kept before the latest: the log is trimmed at the oldest kept
	// one. More keeps a longer per-event history for message traces (about
	// 16 MiB of state, a few million deliveries, per checkpoint) and makes
	// a group's load after a restart or failover replay that much more.
	StateHistoryCheckpoints int `yaml:"state_history_checkpoints"`
}

// RegisterFlags registers the flags of the delivery role with their defaults.
func (c *Config) RegisterFlags(f *flag.FlagSet) {
	c.RetryDelays = Delays{30 * time.Second, time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute}
	f.Var(&c.RetryDelays, "delivery.retry-delays", "Comma-separated delays before a redelivered message comes back, by attempt; the last repeats. Each at least 30s.")
	f.IntVar(&c.StateHistoryCheckpoints, "delivery.state-history-checkpoints", 0, "Checkpoints of each group's state log kept before the latest (each ~16 MiB of state): a longer per-event history for message traces, for a longer replay when a group loads.")
}

// Delays is a flag-settable list of durations.
type Delays []time.Duration

func (d *Delays) String() string {
	parts := make([]string, len(*d))
	for i, v := range *d {
		parts[i] = v.String()
	}
	return strings.Join(parts, ",")
}

// Set parses a comma-separated list.
func (d *Delays) Set(s string) error {
	var out Delays
	for _, part := range strings.Split(s, ",") {
		v, err := time.ParseDuration(strings.TrimSpace(part))
		if err != nil {
			return err
		}
		if v < RetryDelay {
			return fmt.Errorf("retry delay %s is shorter than the minimum %s", v, RetryDelay)
		}
		out = append(out, v)
	}
	if len(out) == 0 {
		return errors.New("at least one retry delay is needed")
	}
	*d = out
	return nil
}

// UnmarshalText lets YAML files use the flag's syntax.
func (d *Delays) UnmarshalText(text []byte) error { return d.Set(string(text)) }

// retryDelay returns the delay before the retry that follows attempt n.
func (c Config) retryDelay(attempts int32) time.Duration {
	if len(c.RetryDelays) == 0 {
		return RetryDelay
	}
	i := int(attempts) - 1
	if i >= len(c.RetryDelays) {
		i = len(c.RetryDelays) - 1
	}
	return c.RetryDelays[max(i, 0)]
}
