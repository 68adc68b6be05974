package kafka

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/opendms/dms/services/authz"
)

// readAhead is how many requests of a connection are read and decoded
// while an earlier one is served: clients pipeline (five in flight is the
// usual producer maximum), and a reader that waits for each response would
// leave them waiting on the socket instead.
const readAhead = 8

// conn is one client connection. Its requests are served one at a time and
// answered in the order they came, as Kafka does: an idempotent producer's
// pipelined batches must reach storage in their sequence order.
type conn struct {
	s      *Server
	nc     net.Conn
	remote string

	// With authentication on: the SASL exchange, and once it succeeded
	// who the connection acts for and in which project. Only the serving
	// goroutine touches them.
	sasl          saslState
	authenticated bool
	principal     authz.Principal
	project       string
	// closeAfterWrite closes the connection once the response in hand is
	// written: a refused authentication.
	closeAfterWrite bool
}

// frame is a request read from the connection, or why reading stopped.
type frame struct {
	req *request
	err error
}

func (s *Server) serveConn(ctx context.Context, nc net.Conn) {
	c := &conn{s: s, nc: nc, remote: nc.RemoteAddr().String()}
	defer nc.Close()
	defer s.connClosed(c)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	frames := make(chan frame, readAhead)
	go c.readLoop(ctx, frames)
	var out []byte
	for f := range frames {
		if f.err != nil {
			if !errors.Is(f.err, io.EOF) && !errors.Is(f.err, net.ErrClosed) && ctx.Err() == nil {
				s.logger.Debug("kafka: closing connection", "remote", c.remote, "err", f.err)
			}
			return
		}
		if f.req.key == keyRawSASL {
			if err := c.serveRawSASL(ctx, f.req); err != nil {
				s.logger.Info("kafka: SASL authentication refused", "remote", c.remote, "mechanism", c.sasl.mechanism, "err", err)
				return
			}
			continue
		}
		resp, err := c.serve(ctx, f.req)
		if err != nil {
			s.logger.Info("kafka: closing connection after a request it cannot answer", "remote", c.remote, "client_id", f.req.clientID,
				"api", kmsg.NameForKey(f.req.key), "version", f.req.version, "err", err)
			return
		}
		if resp == nil {
			continue
		}
		out = appendResponse(out[:0], f.req.correlationID, resp)
		if err := nc.SetWriteDeadline(time.Now().Add(s.cfg.IdleTimeout)); err != nil {
			return
		}
		if _, err := nc.Write(out); err != nil {
			return
		}
		if c.closeAfterWrite {
			return
		}
	}
}

// appendResponse frames a response: size, correlation id, the header's
// tag section on flexible versions, then the body. ApiVersions answers with
// header v0 at every version, so that a client that does not know the
// broker's versions yet can read it.
func appendResponse(dst []byte, correlationID int32, resp kmsg.Response) []byte {
	dst = append(dst, 0, 0, 0, 0)
	dst = binary.BigEndian.AppendUint32(dst, uint32(correlationID))
	if resp.IsFlexible() && resp.Key() != kmsg.ApiVersions.Int16() {
		dst = append(dst, 0)
	}
	dst = resp.AppendTo(dst)
	binary.BigEndian.PutUint32(dst, uint32(len(dst)-4))
	return dst
}

// serve answers one request through the dispatch table. With
// authentication on, a request before SASL authentication other than
// ApiVersions and the SASL ones closes the connection, as Kafka closes it;
// after it, the request is authorized by the access table (access.go).
func (c *conn) serve(ctx context.Context, r *request) (kmsg.Response, error) {
	a := apis[r.key]
	if c.s.deps.Auth != nil && !preAuthAPIs[r.key] {
		if !c.authenticated {
			return nil, fmt.Errorf("kafka: %s before SASL authentication, which this listener requires", kmsg.NameForKey(r.key))
		}
		acc, ok := apiAccess[r.key]
		if !ok {
			return fillErrors(r.body, kerr.ClusterAuthorizationFailed.Code, kmsg.NameForKey(r.key)+" is not authorized for any user"), nil
		}
		if acc.group != "" {
			if err := c.s.authorizeGroup(c, acc.group); err != nil {
				return fillErrors(r.body, kerr.GroupAuthorizationFailed.Code, err.Error()), nil
			}
		}
		ctx = withAccess(ctx, requestAccess{principal: c.principal, action: acc.topic})
	}
	return a.handle(c.s, ctx, r)
}

// readLoop reads and decodes requests until the connection fails or a
// request cannot be decoded, and hands them over in order.
func (c *conn) readLoop(ctx context.Context, frames chan<- frame) {
	defer close(frames)
	rawTokens := 0
	for {
		var req *request
		var err error
		if rawTokens > 0 {
			req, err = c.readRawSASL()
			rawTokens--
		} else {
			req, err = c.readRequest()
		}
		if err == nil {
			rawTokens = c.rawSASLTokens(req)
		}
		select {
		case frames <- frame{req: req, err: err}:
		case <-ctx.Done():
			return
		}
		if err != nil {
			return
		}
	}
}

// readRequest reads one size-prefixed frame and decodes its header and
// body. A frame larger than the limit, a truncated one, an unknown API key
// or version, or a body that does not decode is an error: the connection
// is closed, as Kafka closes it, since nothing after a frame it cannot
// parse can be trusted to be in step.
func (c *conn) readRequest() (*request, error) {
	var size [4]byte
	if err := c.nc.SetReadDeadline(time.Now().Add(c.s.cfg.IdleTimeout)); err != nil {
		return nil, err
	}
	if _, err := io.ReadFull(c.nc, size[:]); err != nil {
		return nil, err
	}
	n := int64(int32(binary.BigEndian.Uint32(size[:])))
	if n < 8 || n > int64(c.s.cfg.MaxRequestBytes) {
		return nil, fmt.Errorf("kafka: request frame of %d bytes, not in [8, %d]", n, c.s.cfg.MaxRequestBytes)
	}
	// Grow the buffer as bytes arrive rather than trusting the length: a
	// client that announces 100 MiB and sends ten bytes costs ten bytes.
	var buf bytes.Buffer
	buf.Grow(int(min(n, 64<<10)))
	if _, err := io.CopyN(&buf, c.nc, n); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("kafka: reading a request frame of %d bytes: %w", n, err)
	}
	return decodeRequest(c, buf.Bytes())
}

// decodeRequest parses a request frame (without its size): header v1 or
// v2, then the body at the header's version. ApiVersions at a version this
// server does not know is still taken (its body is not decoded): the
// answer tells the client which versions exist.
func decodeRequest(c *conn, frame []byte) (*request, error) {
	rd := kbin.Reader{Src: frame}
	r := &request{conn: c, key: rd.Int16(), version: rd.Int16(), correlationID: rd.Int32()}
	if id := rd.NullableString(); id != nil {
		r.clientID = *id
	}
	if err := rd.Complete(); err != nil {
		return nil, fmt.Errorf("kafka: truncated request header: %w", err)
	}
	a, known := apis[r.key]
	if !known {
		return nil, fmt.Errorf("kafka: API key %d (%s) is not served", r.key, kmsg.NameForKey(r.key))
	}
	body := kmsg.RequestForKey(r.key)
	body.SetVersion(r.version)
	r.body = body
	if r.version < a.min || r.version > a.max {
		if r.key == kmsg.ApiVersions.Int16() {
			return r, nil
		}
		return nil, fmt.Errorf("kafka: %s version %d is not served (versions %d to %d are)", kmsg.NameForKey(r.key), r.version, a.min, a.max)
	}
	if body.IsFlexible() {
		kmsg.SkipTags(&rd)
		if err := rd.Complete(); err != nil {
			return nil, fmt.Errorf("kafka: truncated request header tags: %w", err)
		}
	}
	if err := body.ReadFrom(rd.Src); err != nil {
		return nil, fmt.Errorf("kafka: %s v%d request does not decode: %w", kmsg.NameForKey(r.key), r.version, err)
	}
	return r, nil
}
