package amqp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/opendms/dms/services/amqp/wire"
	"github.com/opendms/dms/services/authz"
	"github.com/opendms/dms/services/catalog"
	"github.com/opendms/dms/services/errs"
	"github.com/opendms/dms/services/identity"
)

// Authentication and authorization of AMQP connections, with
// authentication on (-auth.enabled).
//
// Who: PLAIN or AMQPLAIN carry a DMS user name and its password, checked by
// services/identity as the Kafka front end's SASL PLAIN is. A user name is
// a user of one account (names are unique in an account only), so the
// account must be known before the password can be checked, and the vhost
// says it; the password is therefore checked at connection.open rather
// than at start-ok (a refusal is the same connection.close 403
// ACCESS_REFUSED that RabbitMQ sends, one step later):
//
//   - `{user}@{project id}` (the Kafka front end's form) is the user of the
//     account owning that project, and the vhost "/" is that project;
//   - a bare `{user}` is the user of the account owning the vhost's
//     project, the vhost "/" being -protocols.default-project.
//
// Where: the vhost names the project the connection acts in: "/" (or
// empty) as above, a project id (32 hex digits, a leading "/" allowed), or
// a project's name in the user's account. A refused login says the same
// whether the user, the password or the vhost was wrong, so that a client
// cannot learn which users or projects exist.
//
// The principal is the user, not scoped to the vhost's project: a queue
// another project shares with the user's projects by its policy is reached
// through the vhost of the project that owns it, as in the native API.
//
// What: every method that acts on a queue or an exchange is decided by
// authz.Decide for that user, before the queue's existence is looked at
// (who may not see a queue does not learn whether it exists):
//
//	exchange.declare             CreateQueue on the project (passive: ListQueues)
//	exchange.delete              DeleteQueue on the project
//	exchange.bind / unbind       UpdateQueue on the project
//	queue.declare                CreateQueue on the queue (passive: GetQueue)
//	queue.bind / unbind          UpdateQueue on the queue
//	queue.purge                  ConsumeMessages on the queue (a purge moves the
//	                             AMQP group past what is stored: a seek, which
//	                             DMS counts as consuming)
//	queue.delete                 DeleteQueue on the queue
//	basic.publish                ProduceMessages on every queue it routes to
//	                             (on the project when it routes to none)
//	basic.consume / basic.get    ConsumeMessages on the queue
//
// Exchanges are the project's topology, so configuring them takes the
// project-level rights of queues. A denial closes the channel with 403
// ACCESS_REFUSED, as RabbitMQ does, the text giving DMS's reason; every
// denial is in the audit trail (the Directory the server gives is an
// authz.DenialObserver), and every refused login too (Auth.Refused).
// Acks, qos, cancel and confirm.select need no right of their own: they act
// on what consume or publish were allowed. Dead-lettering, expiry and the
// deletion of exclusive and auto-delete queues are the server's own work.

// Auth is what the front end authenticates and authorizes with; nil in
// Deps turns authentication off.
type Auth struct {
	// Authenticator checks passwords.
	Authenticator *identity.Authenticator
	// Directory answers authz's questions (the identity cache); denials are
	// audited when it is an authz.DenialObserver.
	Directory authz.Directory
	// ProjectByName returns the id of an account's project by name, for
	// vhosts that name a project; nil to take project ids only.
	ProjectByName func(account, name string) (string, bool)
	// Refused, when set, is told of every refused login (the audit trail).
	Refused func(remote, user, mechanism string, err error)
}

// errLoginRefused is every refusal of a user name, password or vhost.
var errLoginRefused = errs.Wrapf(errs.ErrCredentialInvalid,
	"login refused: the user name, password or vhost is wrong (user names are {user}, or {user}@{project id}; the vhost is \"/\", a project id or a project's name)")

// credentials are what connection.start-ok carried.
type credentials struct {
	mechanism      string
	user, password string
}

// parseCredentials reads a PLAIN or AMQPLAIN response.
func parseCredentials(mechanism, response string) (credentials, error) {
	cr := credentials{mechanism: mechanism}
	switch mechanism {
	case "PLAIN":
		// RFC 4616: [authzid] NUL authcid NUL passwd.
		parts := strings.Split(response, "\x00")
		if len(parts) != 3 {
			return cr, errors.New("a PLAIN response is [authzid] NUL user NUL password")
		}
		if parts[0] != "" && parts[0] != parts[1] {
			return cr, fmt.Errorf("acting for another user (authorization id %q) is not supported", parts[0])
		}
		cr.user, cr.password = parts[1], parts[2]
	case "AMQPLAIN":
		// A field table without its length: LOGIN and PASSWORD.
		b := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(response)), uint32(len(response)))
		r := wire.NewReader(append(b, response...))
		t := r.Table()
		if r.Err() != nil {
			return cr, fmt.Errorf("an AMQPLAIN response is a field table of LOGIN and PASSWORD: %v", r.Err())
		}
		cr.user, _ = t["LOGIN"].(string)
		cr.password, _ = t["PASSWORD"].(string)
	default:
		return cr, fmt.Errorf("mechanism %q is not offered: use PLAIN or AMQPLAIN", mechanism)
	}
	return cr, nil
}

// vhostProject returns the project a vhost names while authentication is
// off: "/" (or the default project itself) only.
func (c *conn) vhostProject(vhost string) (string, *amqpError) {
	def := c.srv.cfg.DefaultProject
	switch vhost {
	case "/", "", def, "/" + def:
		return def, nil
	}
	return "", errorf(wire.NotAllowed, "vhost %q not found: with authentication off the only vhost is \"/\" (project %s)", trimName(vhost), def)
}

// login checks the credentials for the vhost and makes the connection act
// for the user in the vhost's project.
func (c *conn) login(ctx context.Context, cr credentials, vhost string) *amqpError {
	auth := c.srv.deps.Auth
	p, project, err := c.srv.passwordLogin(ctx, cr, vhost)
	if err != nil {
		c.srv.logger.Info("amqp: login refused", "remote", c.nc.RemoteAddr(), "user", trimName(cr.user), "vhost", trimName(vhost), "err", err)
		if auth.Refused != nil {
			auth.Refused(c.nc.RemoteAddr().String(), cr.user, "amqp-"+strings.ToLower(cr.mechanism), err)
		}
		return refusal(err)
	}
	c.principal, c.project = p, project
	return nil
}

// passwordLogin resolves the account, checks the password and resolves the
// vhost's project.
func (s *Server) passwordLogin(ctx context.Context, cr credentials, vhost string) (authz.Principal, string, error) {
	auth := s.deps.Auth
	dir := auth.Directory
	user, home, suffixed := cr.user, s.cfg.DefaultProject, false
	if i := strings.LastIndexByte(user, '@'); i > 0 {
		if _, ok := dir.ProjectAccount(user[i+1:]); ok {
			user, home, suffixed = user[:i], user[i+1:], true
		}
	}
	var project, account string
	var ok bool
	switch name := strings.TrimPrefix(vhost, "/"); {
	case name == "":
		project = home
		account, ok = dir.ProjectAccount(home)
	case isProjectID(dir, name):
		project = name
		if suffixed {
			account, ok = dir.ProjectAccount(home)
		} else {
			account, ok = dir.ProjectAccount(name)
		}
	default:
		// A project's name, in the user's account.
		account, ok = dir.ProjectAccount(home)
		if ok && auth.ProjectByName != nil {
			project, ok = auth.ProjectByName(account, name)
		} else {
			ok = false
		}
	}
	ref := identity.UserRef{Name: user, DomainID: account}
	if !ok || user == "" {
		// Still hash a password, so that timing does not tell.
		ref = identity.UserRef{ID: "-"}
	}
	p, err := auth.Authenticator.PasswordPrincipal(ctx, ref, cr.password)
	if err != nil || !ok || user == "" {
		if ctx.Err() != nil {
			return authz.Principal{}, "", ctx.Err()
		}
		if cr.user == "" {
			return authz.Principal{}, "", errs.Wrapf(errs.ErrUnauthenticated, "a user name and password are needed (authentication is on)")
		}
		return authz.Principal{}, "", errLoginRefused
	}
	p.Method = "amqp-" + strings.ToLower(cr.mechanism)
	return p, project, nil
}

func isProjectID(dir authz.Directory, name string) bool {
	if catalog.ValidateProject(name) != nil {
		return false
	}
	_, ok := dir.ProjectAccount(name)
	return ok
}

// authorize decides action on a queue of the connection's project (the
// project itself when queue is empty); nil when allowed or when
// authentication is off. A denial is a channel exception, 403.
func (c *conn) authorize(action authz.Action, queue string) *amqpError {
	auth := c.srv.deps.Auth
	if auth == nil {
		return nil
	}
	d := authz.Decide(auth.Directory, c.principal, action, authz.Resource{Project: c.project, Queue: queue})
	if d.Allowed {
		return nil
	}
	return refusal(d.Err)
}

// refusal is 403 with DMS's reason first, so that a reply text cut at 255
// bytes keeps it: ACCESS_REFUSED - PERMISSION_DENIED: ...
func refusal(err error) *amqpError {
	if e := errs.Of(err); e != nil {
		return errorf(wire.AccessRefused, "%s: %v", e.Reason, err)
	}
	return errorf(wire.AccessRefused, "%v", err)
}
