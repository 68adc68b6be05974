package amqp

import (
	"flag"
	"time"
)

// Config of the AMQP 0-9-1 front end.
type Config struct {
	// Addr is where the AMQP listener listens; empty disables it.
	Addr string `yaml:"addr"`
	// FrameMax is the largest frame the server accepts and offers in
	// connection.tune; a client may ask for less.
	FrameMax uint32 `yaml:"frame_max"`
	// ChannelMax is the most channels a connection may open.
	ChannelMax uint16 `yaml:"channel_max"`
	// Heartbeat is the heartbeat interval the server proposes; a client may
	// ask for another, 0 turning heartbeats off.
	Heartbeat time.Duration `yaml:"heartbeat"`
	// DefaultProject is the project the vhost "/" names while authentication
	// is off; set from -protocols.default-project.
	DefaultProject string `yaml:"-"`
}

// RegisterFlags registers the flags of the AMQP front end.
func (c *Config) RegisterFlags(f *flag.FlagSet) {
	f.StringVar(&c.Addr, "amqp.addr", "127.0.0.1:5672", "Address of the AMQP 0-9-1 listener (HOST:PORT); empty disables it.")
	// RabbitMQ's defaults: frame_max 131072, channel_max 2047, heartbeat 60 s.
	f.Func("amqp.frame-max", "Largest AMQP frame in bytes (4096 to 1048576; default 131072, as RabbitMQ).", func(s string) error {
		return parseUint32(s, &c.FrameMax)
	})
	c.FrameMax = 131072
	c.ChannelMax = 2047
	f.DurationVar(&c.Heartbeat, "amqp.heartbeat", 60*time.Second, "Heartbeat interval proposed to AMQP clients (whole seconds; 0 proposes none).")
}
