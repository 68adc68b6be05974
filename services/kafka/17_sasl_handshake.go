package kafka

// SaslHandshake (key 17): versions 0-1.
//
// Picks the SASL mechanism of a connection, with authentication on:
// PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (sasl.go); at version 1 the
// exchange follows in SaslAuthenticate requests, at version 0 as bare
// size-prefixed tokens (sasl_v0.go). Version 0 is served as well because
// librdkafka looks for it in ApiVersions before it will authenticate at
// all (its SASL_HANDSHAKE feature needs SaslHandshake v0). A second handshake on a connection is
// ILLEGAL_SASL_STATE, an unknown mechanism UNSUPPORTED_SASL_MECHANISM with
// the list of the served ones. With authentication off every mechanism is
// refused: there are no users to be.

import (
	"context"
	"slices"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(kmsg.SASLHandshake.Int16(), 0, 1, (*Server).saslHandshake) }

func (s *Server) saslHandshake(_ context.Context, r *request, req *kmsg.SASLHandshakeRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.SASLHandshakeResponse)
	c := r.conn
	switch {
	case s.deps.Auth == nil:
		resp.ErrorCode = kerr.UnsupportedSaslMechanism.Code
	case c.sasl.mechanism != "" || c.authenticated:
		resp.ErrorCode = kerr.IllegalSaslState.Code
	case !slices.Contains(saslMechanisms, req.Mechanism):
		resp.ErrorCode = kerr.UnsupportedSaslMechanism.Code
		resp.SupportedMechanisms = saslMechanisms
	default:
		c.sasl.mechanism = req.Mechanism
		resp.SupportedMechanisms = saslMechanisms
	}
	return resp, nil
}
