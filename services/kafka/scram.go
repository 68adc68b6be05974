package kafka

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	metadatav1 "github.com/opendms/dms/gen/go/dms/cluster/metadata/v1"
	"github.com/opendms/dms/services/authz"
	"github.com/opendms/dms/services/identity"
)

// The server side of SCRAM (RFC 5802) over SaslAuthenticate, with the
// credentials identity keeps for each password (identity/scram.go): the
// client sends client-first, the server answers server-first with its
// nonce, the salt and the iteration count, the client sends client-final
// with its proof, and the server checks it and answers server-final with
// its own signature. The server hashes nothing slow: the client pays for
// PBKDF2. Channel binding is not offered (the listener has no TLS) and
// Kafka's delegation tokens (the tokenauth extension) are not served. The
// password is not SASLprep-normalized, as Kafka's own brokers do not; the
// credentials were made from the same bytes.

// scramExchange is a connection's SCRAM exchange between its two messages.
type scramExchange struct {
	gs2Header       string
	clientFirstBare string
	serverFirst     string
	clientNonce     string
	nonce           string
	cred            *metadatav1.ScramCredential
	principal       authz.Principal
	known           bool
	project         string
}

var errSCRAMMalformed = errors.New("the SCRAM message is malformed")

// scramStep takes one client message of a SCRAM exchange.
func (s *Server) scramStep(_ context.Context, c *conn, msg string) ([]byte, error) {
	if c.sasl.scram == nil {
		return s.scramFirst(c, msg)
	}
	return s.scramFinal(c, msg)
}

// scramFirst reads client-first and answers server-first.
func (s *Server) scramFirst(c *conn, msg string) ([]byte, error) {
	// gs2-header: cbind-flag "," [ "a=" authzid ] ","
	flag, rest, ok := strings.Cut(msg, ",")
	if !ok {
		return nil, errSCRAMMalformed
	}
	switch {
	case flag == "n" || flag == "y":
	case strings.HasPrefix(flag, "p="):
		return nil, errors.New("SCRAM channel binding is not served (the listener has no TLS)")
	default:
		return nil, errSCRAMMalformed
	}
	authzid, bare, ok := strings.Cut(rest, ",")
	if !ok {
		return nil, errSCRAMMalformed
	}
	var user, nonce string
	for i, attr := range strings.Split(bare, ",") {
		k, v, _ := strings.Cut(attr, "=")
		switch {
		case i == 0 && k == "m":
			return nil, errors.New("SCRAM mandatory extensions are not served")
		case i == 0 && k == "n":
			name, err := decodeSASLName(v)
			if err != nil {
				return nil, err
			}
			user = name
		case i == 1 && k == "r":
			nonce = v
		case i > 1 && k == "tokenauth":
			return nil, errors.New("Kafka delegation tokens are not served; log in with a DMS user's password")
		}
	}
	if user == "" || nonce == "" {
		return nil, errSCRAMMalformed
	}
	if authzid != "" {
		a, err := decodeSASLName(strings.TrimPrefix(authzid, "a="))
		if err != nil || !strings.HasPrefix(authzid, "a=") {
			return nil, errSCRAMMalformed
		}
		if a != user {
			return nil, fmt.Errorf("acting for another user (authorization id %q) is not supported", a)
		}
	}
	ex := &scramExchange{gs2Header: flag + "," + authzid + ",", clientFirstBare: bare}
	ref, project, ok := s.userRef(user)
	if !ok {
		ref = identity.UserRef{ID: "-" + user}
	}
	ex.cred, ex.principal, ex.known = s.deps.Auth.Authenticator.ScramCredential(ref, c.sasl.mechanism)
	ex.known = ex.known && ok
	ex.project = project
	var sn [18]byte
	_, _ = rand.Read(sn[:])
	ex.clientNonce = nonce
	ex.nonce = nonce + base64.RawStdEncoding.EncodeToString(sn[:])
	ex.serverFirst = fmt.Sprintf("r=%s,s=%s,i=%d", ex.nonce, base64.StdEncoding.EncodeToString(ex.cred.GetSalt()), ex.cred.GetIterations())
	c.sasl.scram = ex
	return []byte(ex.serverFirst), nil
}

// scramFinal reads client-final, checks the proof and answers
// server-final.
func (s *Server) scramFinal(c *conn, msg string) ([]byte, error) {
	ex := c.sasl.scram
	withoutProof, proof64, ok := strings.Cut(msg, ",p=")
	if !ok || strings.Contains(proof64, ",") {
		return nil, errSCRAMMalformed
	}
	attrs := strings.Split(withoutProof, ",")
	if len(attrs) < 2 || attrs[0] != "c="+base64.StdEncoding.EncodeToString([]byte(ex.gs2Header)) {
		return nil, errors.New("the SCRAM channel binding does not match the first message")
	}
	// librdkafka sends its own nonce again before the combined one
	// (r=c-nonce+c-nonce+s-nonce); Kafka's brokers take that too.
	if r := attrs[1]; r != "r="+ex.nonce && r != "r="+ex.clientNonce+ex.nonce {
		return nil, errors.New("the SCRAM nonce does not match the server's")
	}
	proof, err := base64.StdEncoding.DecodeString(proof64)
	h := identity.ScramHash(c.sasl.mechanism)
	if err != nil || len(proof) != h().Size() {
		return nil, errSCRAMMalformed
	}
	authMessage := ex.clientFirstBare + "," + ex.serverFirst + "," + withoutProof
	sig := hmac.New(h, ex.cred.GetStoredKey())
	sig.Write([]byte(authMessage))
	clientKey := sig.Sum(nil)
	for i := range clientKey {
		clientKey[i] ^= proof[i]
	}
	sum := h()
	sum.Write(clientKey)
	if subtle.ConstantTimeCompare(sum.Sum(nil), ex.cred.GetStoredKey()) != 1 || !ex.known {
		return nil, errSASLRefused
	}
	server := hmac.New(h, ex.cred.GetServerKey())
	server.Write([]byte(authMessage))
	p := ex.principal
	p.ScopeProject, p.Method = ex.project, "kafka-sasl-"+strings.ToLower(c.sasl.mechanism)
	c.login(p, ex.project)
	c.sasl.scram = nil
	return []byte("v=" + base64.StdEncoding.EncodeToString(server.Sum(nil))), nil
}

// decodeSASLName undoes RFC 5802's escaping of ',' and '=' in names.
func decodeSASLName(s string) (string, error) {
	if !strings.Contains(s, "=") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '=' {
			b.WriteByte(s[i])
			continue
		}
		switch {
		case strings.HasPrefix(s[i:], "=2C"):
			b.WriteByte(',')
		case strings.HasPrefix(s[i:], "=3D"):
			b.WriteByte('=')
		default:
			return "", errSCRAMMalformed
		}
		i += 2
	}
	return b.String(), nil
}
