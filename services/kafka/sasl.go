package kafka

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/opendms/dms/services/authz"
	"github.com/opendms/dms/services/catalog"
	"github.com/opendms/dms/services/identity"
)

// SASL authentication of Kafka connections, with authentication on.
//
// The Kafka user name says who and where: `{user}@{project}` is the DMS
// user named {user} of the account owning project {project} (a 32-hex
// project id), acting in that project; a bare `{user}` acts in the
// default project (-protocols.default-project). The connection's topics
// are then that project's queues, its consumer groups that project's,
// and every request is decided by authz for that user in that project
// (the principal is scoped to it, as a project-scoped token is). A
// project's id cannot contain '@', so the last '@' separates them, and a
// user name may contain '@' (`alice@example.com@{project}`).
//
// Any refusal says the same thing, whether the user, the project or the
// password was wrong, so that a client cannot learn which users exist.

// The SASL mechanisms served, in the order SaslHandshake lists them.
const (
	mechPlain = "PLAIN"
)

var saslMechanisms = []string{mechPlain, identity.ScramSHA256, identity.ScramSHA512}

// Auth is what the front end authenticates and authorizes with; nil in
// Deps turns authentication off.
type Auth struct {
	// Authenticator checks passwords.
	Authenticator *identity.Authenticator
	// Directory answers authz's questions (the identity cache).
	Directory authz.Directory
}

// saslState is a connection's SASL exchange.
type saslState struct {
	mechanism string
	// scram is a SCRAM exchange between its first and last message.
	scram *scramExchange
}

// errSASLRefused is every refusal of a user name and password.
var errSASLRefused = errors.New("the user name or password is wrong (user names are {user}@{project id}, or {user} for the default project)")

// saslStep takes one SaslAuthenticate token of the connection's exchange
// and returns the answer to send.
func (s *Server) saslStep(ctx context.Context, c *conn, token []byte) ([]byte, error) {
	switch c.sasl.mechanism {
	case mechPlain:
		// RFC 4616: [authzid] NUL authcid NUL passwd.
		parts := bytes.Split(token, []byte{0})
		if len(parts) != 3 {
			return nil, fmt.Errorf("a PLAIN message is [authzid] NUL user NUL password")
		}
		authzid, user, password := string(parts[0]), string(parts[1]), string(parts[2])
		if authzid != "" && authzid != user {
			return nil, fmt.Errorf("acting for another user (authorization id %q) is not supported", authzid)
		}
		p, project, err := s.passwordLogin(ctx, user, password)
		if err != nil {
			return nil, err
		}
		c.login(p, project)
		return nil, nil
	case identity.ScramSHA256, identity.ScramSHA512:
		return s.scramStep(ctx, c, string(token))
	}
	return nil, fmt.Errorf("mechanism %q is not served", c.sasl.mechanism)
}

// splitUsername splits a Kafka user name into the DMS user name and the
// project; false when the project named is not a valid project id.
func (s *Server) splitUsername(username string) (user, project string, ok bool) {
	user, project = username, s.cfg.DefaultProject
	if i := strings.LastIndexByte(username, '@'); i >= 0 {
		user, project = username[:i], username[i+1:]
	}
	if user == "" || catalog.ValidateProject(project) != nil {
		return "", "", false
	}
	return user, project, true
}

// userRef names a Kafka user name's DMS user: by name in the account that
// owns the project.
func (s *Server) userRef(username string) (identity.UserRef, string, bool) {
	user, project, ok := s.splitUsername(username)
	if !ok {
		return identity.UserRef{}, "", false
	}
	account, ok := s.deps.Auth.Directory.ProjectAccount(project)
	if !ok {
		return identity.UserRef{}, "", false
	}
	return identity.UserRef{Name: user, DomainID: account}, project, true
}

// passwordLogin checks a Kafka user name and password and returns the
// principal, scoped to the project the user name names.
func (s *Server) passwordLogin(ctx context.Context, username, password string) (authz.Principal, string, error) {
	ref, project, ok := s.userRef(username)
	if !ok {
		// Still hash a password, so that timing does not tell.
		ref = identity.UserRef{ID: "-"}
	}
	p, err := s.deps.Auth.Authenticator.PasswordPrincipal(ctx, ref, password)
	if err != nil || !ok {
		if ctx.Err() != nil {
			return authz.Principal{}, "", ctx.Err()
		}
		return authz.Principal{}, "", errSASLRefused
	}
	p.ScopeProject, p.Method = project, "kafka-sasl-plain"
	return p, project, nil
}

// login makes the connection act for p in project.
func (c *conn) login(p authz.Principal, project string) {
	c.principal, c.project, c.authenticated = p, project, true
}
