package amqp

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/opendms/dms/services/amqp/wire"
	"github.com/opendms/dms/services/authz"
)

// handshakeTimeout bounds the opening of a connection (protocol header to
// connection.open), as RabbitMQ's handshake_timeout (10 s) does.
const handshakeTimeout = 10 * time.Second

// closeOkTimeout is how long a connection closed by the server waits for
// the client's connection.close-ok before it drops the socket.
const closeOkTimeout = 5 * time.Second

// amqpError is an AMQP exception: a reply code, a text and the method that
// caused it. Soft codes close the channel, hard ones the connection.
type amqpError struct {
	code          uint16
	text          string
	class, method uint16
}

func (e *amqpError) Error() string { return fmt.Sprintf("%d %s", e.code, e.text) }

func errorf(code uint16, format string, args ...any) *amqpError {
	return &amqpError{code: code, text: fmt.Sprintf(format, args...)}
}

// replyText builds a reply-text as RabbitMQ words them: CODE_NAME - text.
func replyText(code uint16, text string) string {
	name := map[uint16]string{
		wire.ContentTooLarge: "CONTENT_TOO_LARGE", wire.NoRoute: "NO_ROUTE", wire.AccessRefused: "ACCESS_REFUSED",
		wire.NotFound: "NOT_FOUND", wire.ResourceLocked: "RESOURCE_LOCKED", wire.PreconditionFailed: "PRECONDITION_FAILED",
		wire.FrameError: "FRAME_ERROR", wire.SyntaxError: "SYNTAX_ERROR", wire.CommandInvalid: "COMMAND_INVALID",
		wire.ChannelError: "CHANNEL_ERROR", wire.UnexpectedFrame: "UNEXPECTED_FRAME", wire.ResourceError: "RESOURCE_ERROR",
		wire.NotAllowed: "NOT_ALLOWED", wire.NotImplemented: "NOT_IMPLEMENTED", wire.InternalError: "INTERNAL_ERROR",
		wire.ConnectionForced: "CONNECTION_FORCED",
	}[code]
	s := name + " - " + text
	if len(s) > 255 {
		s = s[:255]
	}
	return s
}

// conn is one client connection.
type conn struct {
	srv *Server
	nc  net.Conn
	fr  *wire.FrameReader

	project   string
	vhost     string          // as the client named it, for reply texts
	principal authz.Principal // who the connection acts for (authentication on)
	frameMax  uint32
	heartbeat time.Duration

	ctx    context.Context
	cancel context.CancelFunc

	wmu       sync.Mutex
	bw        *bufio.Writer
	wbuf      []byte
	lastWrite time.Time
	werr      error

	exclusive []string // queues declared exclusive: deleted when the connection ends

	// connection.blocked (blocked.go): whether the client takes it, what it
	// should know and what it was last told.
	bmu                      sync.Mutex
	open, blockedCap         bool
	blockedWant, blockedSent bool

	chmu     sync.Mutex
	channels map[uint16]*channel
	closing  bool // connection.close sent or received
}

func newConn(s *Server, nc net.Conn) *conn {
	c := &conn{srv: s, nc: nc, bw: bufio.NewWriterSize(nc, 64<<10), channels: map[uint16]*channel{}, frameMax: s.cfg.FrameMax}
	c.ctx, c.cancel = context.WithCancel(s.ctx)
	return c
}

// shutdown closes the socket; serve then cleans up.
func (c *conn) shutdown() { _ = c.nc.Close() }

func (c *conn) serve() {
	defer c.cleanup()
	br := bufio.NewReaderSize(c.nc, 64<<10)
	_ = c.nc.SetDeadline(time.Now().Add(handshakeTimeout))
	if err := c.handshake(br); err != nil {
		c.srv.logger.Debug("amqp: handshake failed", "remote", c.nc.RemoteAddr(), "err", err)
		if c.isClosed() {
			c.drainUntilCloseOk()
		}
		return
	}
	_ = c.nc.SetDeadline(time.Time{})
	if c.heartbeat > 0 {
		go c.heartbeats()
	}
	for {
		if c.heartbeat > 0 {
			// The spec: a peer that hears nothing for two intervals is gone.
			_ = c.nc.SetReadDeadline(time.Now().Add(2 * c.heartbeat))
		}
		f, err := c.fr.ReadFrame()
		if err != nil {
			c.readFailed(err)
			return
		}
		if err := c.frame(f); err != nil {
			var ae *amqpError
			if errors.As(err, &ae) {
				c.closeConnection(ae)
				c.drainUntilCloseOk()
			}
			return
		}
		if c.isClosed() {
			return
		}
	}
}

// readFailed answers a frame that could not be read: a frame too large or
// badly ended is a FRAME_ERROR; a truncated one or a timeout just ends.
func (c *conn) readFailed(err error) {
	switch {
	case errors.Is(err, wire.ErrFrameTooLarge), errors.Is(err, wire.ErrFrameEnd):
		c.closeConnection(errorf(wire.FrameError, "%v", err))
		c.drainUntilCloseOk()
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
	default:
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			c.srv.logger.Debug("amqp: missed heartbeats", "remote", c.nc.RemoteAddr())
		}
	}
}

func (c *conn) isClosed() bool {
	c.chmu.Lock()
	defer c.chmu.Unlock()
	return c.closing
}

// handshake reads the protocol header and runs start, tune and open.
func (c *conn) handshake(br *bufio.Reader) error {
	hdr := make([]byte, 8)
	if _, err := io.ReadFull(br, hdr); err != nil {
		// A short or absent header is answered like a wrong one.
		_, _ = c.nc.Write(wire.ProtocolHeader)
		return err
	}
	if !bytes.Equal(hdr, wire.ProtocolHeader) {
		// The spec: answer with the protocol header we speak and close.
		_, _ = c.nc.Write(wire.ProtocolHeader)
		return fmt.Errorf("protocol header %q", hdr)
	}
	c.fr = wire.NewFrameReader(br, wire.FrameMinSize)
	c.send(0, &wire.ConnectionStart{
		VersionMajor: 0, VersionMinor: 9,
		ServerProperties: wire.Table{
			"product": "DMS", "platform": "Go", "version": "1",
			"capabilities": wire.Table{
				"publisher_confirms": true, "basic.nack": true, "consumer_cancel_notify": true,
				"exchange_exchange_bindings": true, "connection.blocked": true, "authentication_failure_close": true,
				"per_consumer_qos": true, "direct_reply_to": false,
			},
		},
		Mechanisms: "PLAIN AMQPLAIN", Locales: "en_US",
	})
	c.flush()
	startOk, err := readMethod[*wire.ConnectionStartOk](c)
	if err != nil {
		return err
	}
	if caps, ok := startOk.ClientProperties["capabilities"].(wire.Table); ok {
		c.blockedCap, _ = caps["connection.blocked"].(bool)
	}
	cr, err := parseCredentials(startOk.Mechanism, startOk.Response)
	if err != nil && (c.srv.deps.Auth != nil || (startOk.Mechanism != "PLAIN" && startOk.Mechanism != "AMQPLAIN")) {
		c.closeConnection(errorf(wire.AccessRefused, "%v", err))
		return err
	}
	// The password is checked at connection.open, once the vhost says
	// which account the user is of (auth.go).
	c.send(0, &wire.ConnectionTune{ChannelMax: c.srv.cfg.ChannelMax, FrameMax: c.srv.cfg.FrameMax, Heartbeat: uint16(c.srv.cfg.Heartbeat / time.Second)})
	c.flush()
	tuneOk, err := readMethod[*wire.ConnectionTuneOk](c)
	if err != nil {
		return err
	}
	if tuneOk.FrameMax != 0 && tuneOk.FrameMax < wire.FrameMinSize {
		c.closeConnection(errorf(wire.NotAllowed, "frame_max %d is below the minimum %d", tuneOk.FrameMax, wire.FrameMinSize))
		return errors.New("bad frame_max")
	}
	if tuneOk.FrameMax != 0 && tuneOk.FrameMax < c.frameMax {
		c.frameMax = tuneOk.FrameMax
	}
	c.fr.Max = c.frameMax
	c.heartbeat = time.Duration(tuneOk.Heartbeat) * time.Second
	open, err := readMethod[*wire.ConnectionOpen](c)
	if err != nil {
		return err
	}
	if c.srv.deps.Auth == nil {
		project, aerr := c.vhostProject(open.VirtualHost)
		if aerr != nil {
			c.closeConnection(aerr)
			return aerr
		}
		c.project = project
	} else {
		ctx, cancel := context.WithTimeout(c.ctx, handshakeTimeout)
		aerr := c.login(ctx, cr, open.VirtualHost)
		cancel()
		if aerr != nil {
			c.closeConnection(aerr)
			return aerr
		}
	}
	c.vhost = open.VirtualHost
	if c.vhost == "" {
		c.vhost = "/"
	}
	c.send(0, &wire.ConnectionOpenOk{})
	c.flush()
	c.opened()
	return nil
}

// readMethod reads the next handshake method, which must be an M on
// channel 0 (heartbeats are skipped).
func readMethod[M wire.Method](c *conn) (M, error) {
	var zero M
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			c.readFailed(err)
			return zero, err
		}
		if f.Type == wire.FrameHeartbeat {
			continue
		}
		if f.Type != wire.FrameMethod || f.Channel != 0 {
			c.closeConnection(errorf(wire.UnexpectedFrame, "expected a method on channel 0 during the handshake, got a frame of type %d on channel %d", f.Type, f.Channel))
			return zero, errors.New("unexpected frame")
		}
		m, err := wire.ParseMethod(f.Payload)
		if err != nil {
			c.closeConnection(methodError(err))
			return zero, err
		}
		if _, ok := m.(*wire.ConnectionClose); ok {
			c.send(0, &wire.ConnectionCloseOk{})
			c.flush()
			return zero, errors.New("closed by the client")
		}
		want, ok := m.(M)
		if !ok {
			c.closeConnection(errorf(wire.CommandInvalid, "expected %s, got %s", zero.Name(), m.Name()))
			return zero, errors.New("unexpected method")
		}
		return want, nil
	}
}

// methodError turns a method that could not be decoded into its exception.
func methodError(err error) *amqpError {
	var um *wire.UnknownMethodError
	if errors.As(err, &um) {
		return &amqpError{code: wire.CommandInvalid, text: err.Error(), class: um.Class, method: um.Method}
	}
	return errorf(wire.SyntaxError, "malformed method: %v", err)
}

// frame handles one frame after the handshake.
func (c *conn) frame(f wire.Frame) error {
	if f.Type == wire.FrameHeartbeat {
		if f.Channel != 0 {
			return errorf(wire.CommandInvalid, "heartbeat on channel %d", f.Channel)
		}
		return nil
	}
	if f.Channel == 0 {
		if f.Type != wire.FrameMethod {
			return errorf(wire.CommandInvalid, "frame of type %d on channel 0", f.Type)
		}
		m, err := wire.ParseMethod(f.Payload)
		if err != nil {
			return methodError(err)
		}
		return c.connectionMethod(m)
	}
	c.chmu.Lock()
	ch := c.channels[f.Channel]
	c.chmu.Unlock()
	if ch == nil {
		if f.Type != wire.FrameMethod {
			return errorf(wire.ChannelError, "frame on channel %d, which is not open", f.Channel)
		}
		m, err := wire.ParseMethod(f.Payload)
		if err != nil {
			return methodError(err)
		}
		if _, ok := m.(*wire.ChannelOpen); !ok {
			cl, id := m.ID()
			return &amqpError{code: wire.ChannelError, text: fmt.Sprintf("%s on channel %d, which is not open", m.Name(), f.Channel), class: cl, method: id}
		}
		if f.Channel > c.srv.cfg.ChannelMax {
			return errorf(wire.ChannelError, "channel %d is above channel_max %d", f.Channel, c.srv.cfg.ChannelMax)
		}
		ch = newChannel(c, f.Channel)
		c.chmu.Lock()
		c.channels[f.Channel] = ch
		c.chmu.Unlock()
		c.send(f.Channel, &wire.ChannelOpenOk{})
		c.flush()
		return nil
	}
	return ch.frame(f)
}

func (c *conn) connectionMethod(m wire.Method) error {
	switch m := m.(type) {
	case *wire.ConnectionClose:
		c.closeChannels()
		// Before close-ok, so that a client that closed sees them gone.
		c.dropExclusive()
		c.chmu.Lock()
		c.closing = true
		c.chmu.Unlock()
		c.send(0, &wire.ConnectionCloseOk{})
		c.flush()
		return nil
	case *wire.ConnectionCloseOk:
		return nil
	case *wire.ConnectionBlocked, *wire.ConnectionUnblocked:
		return nil
	default:
		cl, id := m.ID()
		return &amqpError{code: wire.CommandInvalid, text: m.Name() + " is not expected on an open connection", class: cl, method: id}
	}
}

// closeConnection sends connection.close; the caller then waits for the
// client's close-ok (drainUntilCloseOk) or just ends.
func (c *conn) closeConnection(e *amqpError) {
	c.chmu.Lock()
	already := c.closing
	c.closing = true
	c.chmu.Unlock()
	if already {
		return
	}
	c.srv.logger.Debug("amqp: closing connection", "remote", c.nc.RemoteAddr(), "code", e.code, "text", e.text)
	c.send(0, &wire.ConnectionClose{ReplyCode: e.code, ReplyText: replyText(e.code, e.text), ClassId: e.class, MethodId: e.method})
	c.flush()
}

// drainUntilCloseOk discards frames until connection.close-ok, as the spec
// asks of a peer that sent connection.close, for a bounded time.
func (c *conn) drainUntilCloseOk() {
	_ = c.nc.SetReadDeadline(time.Now().Add(closeOkTimeout))
	if c.fr.SkipRefused() != nil {
		return
	}
	for {
		f, err := c.fr.ReadFrame()
		if errors.Is(err, wire.ErrFrameTooLarge) || errors.Is(err, wire.ErrFrameEnd) {
			// Out of step with the client: discard bytes until it closes.
			_, _ = io.Copy(io.Discard, c.nc)
			return
		}
		if err != nil {
			return
		}
		if f.Type == wire.FrameMethod && f.Channel == 0 {
			if m, err := wire.ParseMethod(f.Payload); err == nil {
				switch m.(type) {
				case *wire.ConnectionCloseOk:
					return
				case *wire.ConnectionClose:
					c.send(0, &wire.ConnectionCloseOk{})
					c.flush()
					return
				}
			}
		}
	}
}

func (c *conn) closeChannels() {
	c.chmu.Lock()
	chans := make([]*channel, 0, len(c.channels))
	for _, ch := range c.channels {
		chans = append(chans, ch)
	}
	c.channels = map[uint16]*channel{}
	c.chmu.Unlock()
	for _, ch := range chans {
		ch.close()
	}
}

func (c *conn) cleanup() {
	c.closeChannels()
	_ = c.nc.Close()
	c.dropExclusive()
	c.cancel()
}

// dropExclusive deletes the connection's exclusive queues.
func (c *conn) dropExclusive() {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.ctx), closeOkTimeout)
	defer cancel()
	for _, name := range c.exclusive {
		q, err := c.srv.deps.Catalog.ResolveQueue(ctx, c.project, name)
		if err != nil {
			continue
		}
		if err := c.srv.deleteQueue(ctx, c.project, &amqpQueue{name: name, q: q}); err != nil {
			c.srv.logger.Warn("amqp: deleting an exclusive queue failed", "queue", name, "err", err)
		}
	}
	c.exclusive = nil
}

func (c *conn) addExclusive(name string) {
	for _, n := range c.exclusive {
		if n == name {
			return
		}
	}
	c.exclusive = append(c.exclusive, name)
}

// send queues a method frame; flush writes what was queued.
func (c *conn) send(channel uint16, m wire.Method) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wbuf = wire.AppendMethod(c.wbuf[:0], channel, m)
	c.write(c.wbuf)
}

// sendContent queues a method with content.
func (c *conn) sendContent(channel uint16, m wire.Method, props *wire.BasicProperties, body []byte) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wbuf = wire.AppendMethod(c.wbuf[:0], channel, m)
	c.wbuf = wire.AppendContent(c.wbuf, channel, wire.ClassBasic, props, body, c.frameMax)
	c.write(c.wbuf)
}

// write is called with wmu held.
func (c *conn) write(b []byte) {
	if c.werr != nil {
		return
	}
	if _, err := c.bw.Write(b); err != nil {
		c.werr = err
		_ = c.nc.Close()
	}
}

func (c *conn) flush() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return
	}
	c.lastWrite = time.Now()
	if err := c.bw.Flush(); err != nil {
		c.werr = err
		_ = c.nc.Close()
	}
}

// heartbeats sends a heartbeat whenever nothing was written for half the
// interval.
func (c *conn) heartbeats() {
	t := time.NewTicker(c.heartbeat / 2)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		c.wmu.Lock()
		idle := time.Since(c.lastWrite) >= c.heartbeat/2
		c.wmu.Unlock()
		if idle {
			c.wmu.Lock()
			c.write(wire.AppendHeartbeat(nil))
			c.wmu.Unlock()
			c.flush()
		}
	}
}

// trimName keeps a name printable in a reply text.
func trimName(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}
