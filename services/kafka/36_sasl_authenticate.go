package kafka

// SaslAuthenticate (key 36): versions 0-2.
//
// Carries the SASL exchange of the mechanism SaslHandshake picked (sasl.go).
// A refused exchange is answered SASL_AUTHENTICATION_FAILED with a message
// and the connection is closed after the answer, as Kafka does. The
// session lifetime (v1+) is 0: a connection stays authenticated until it
// closes (no re-authentication, KIP-368); a deleted user, or one whose
// roles are taken away, is refused from the next request on since every
// request is decided anew.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(kmsg.SASLAuthenticate.Int16(), 0, 2, (*Server).saslAuthenticate) }

func (s *Server) saslAuthenticate(ctx context.Context, r *request, req *kmsg.SASLAuthenticateRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.SASLAuthenticateResponse)
	c := r.conn
	if s.deps.Auth == nil || c.sasl.mechanism == "" || c.authenticated {
		resp.ErrorCode = kerr.IllegalSaslState.Code
		resp.ErrorMessage = strPtr("SaslAuthenticate needs a SaslHandshake first, once per connection, and a listener with authentication on")
		// Out of step with authentication on: Kafka closes the connection.
		// With it off there is nothing to get out of step with.
		c.closeAfterWrite = s.deps.Auth != nil
		return resp, nil
	}
	out, err := s.saslStep(ctx, c, req.SASLAuthBytes)
	if err != nil {
		s.logger.Info("kafka: SASL authentication refused", "remote", c.remote, "mechanism", c.sasl.mechanism, "err", err)
		resp.ErrorCode = kerr.SaslAuthenticationFailed.Code
		resp.ErrorMessage = strPtr(err.Error())
		c.closeAfterWrite = true
		return resp, nil
	}
	resp.SASLAuthBytes = out
	return resp, nil
}

func strPtr(s string) *string { return &s }
