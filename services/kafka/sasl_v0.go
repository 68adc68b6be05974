package kafka

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/opendms/dms/services/identity"
)

// SASL after a SaslHandshake v0 (clients before Kafka 1.0): the tokens of
// the exchange follow as bare size-prefixed frames, not as requests, and
// the server answers each with a bare frame; a refusal closes the
// connection without an answer. The reader must know how many such frames
// follow before the serving goroutine has answered the handshake, so it
// decides from the handshake itself: PLAIN sends one token, SCRAM two. A
// handshake that is then refused (a second one) leaves the reader taking a
// request as a token, which fails the exchange and closes the connection:
// the client was out of step anyway.

// keyRawSASL marks a bare SASL token frame; no API has a negative key.
const keyRawSASL = -1

// rawSASLTokens returns how many bare SASL frames follow a request.
func (c *conn) rawSASLTokens(r *request) int {
	if r.key != kmsg.SASLHandshake.Int16() || r.version != 0 || c.s.deps.Auth == nil {
		return 0
	}
	hs, ok := r.body.(*kmsg.SASLHandshakeRequest)
	if !ok {
		return 0
	}
	switch hs.Mechanism {
	case mechPlain:
		return 1
	case identity.ScramSHA256, identity.ScramSHA512:
		return 2
	}
	return 0
}

// readRawSASL reads a bare SASL token frame.
func (c *conn) readRawSASL() (*request, error) {
	var size [4]byte
	if err := c.nc.SetReadDeadline(time.Now().Add(c.s.cfg.IdleTimeout)); err != nil {
		return nil, err
	}
	if _, err := io.ReadFull(c.nc, size[:]); err != nil {
		return nil, err
	}
	// A token is small: a user name, a password, nonces and a proof.
	n := int32(binary.BigEndian.Uint32(size[:]))
	if n < 0 || n > 64<<10 {
		return nil, fmt.Errorf("kafka: SASL token of %d bytes", n)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(c.nc, buf); err != nil {
		return nil, err
	}
	return &request{conn: c, key: keyRawSASL, body: nil, raw: buf}, nil
}

// serveRawSASL takes a bare token and writes the bare answer; an error
// closes the connection.
func (c *conn) serveRawSASL(ctx context.Context, r *request) error {
	if c.sasl.mechanism == "" || c.authenticated {
		return errors.New("a SASL token out of step with the handshake")
	}
	out, err := c.s.saslStep(ctx, c, r.raw)
	if err != nil {
		return err
	}
	frame := binary.BigEndian.AppendUint32(nil, uint32(len(out)))
	frame = append(frame, out...)
	if err := c.nc.SetWriteDeadline(time.Now().Add(c.s.cfg.IdleTimeout)); err != nil {
		return err
	}
	_, err = c.nc.Write(frame)
	return err
}
