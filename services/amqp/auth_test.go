package amqp_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/metadata"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/server"
	"github.com/opendms/dms/services/testserver"
)

const authAdminPassword = "correct-horse-battery-staple"

// authWorld is a dmsd with authentication on and users of its default
// project: pete a producer, carl a consumer, vera a viewer, nora with no
// role; and bob, administrator of project "b" of account acme.
type authWorld struct {
	s        *testserver.Server
	admin    context.Context
	projectB string
	users    map[string]string // name → id
}

func startAuth(t testing.TB, opts ...testserver.Option) *authWorld {
	t.Helper()
	t.Setenv("DMS_ADMIN_PASSWORD", authAdminPassword)
	s := testserver.Start(t, append([]testserver.Option{testserver.WithFlags("-auth.enabled")}, opts...)...)
	body := fmt.Sprintf(`{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"admin","password":%q,"domain":{"name":"Default"}}}}}}`, authAdminPassword)
	resp, err := http.Post("http://"+s.HTTPAddr+"/v3/auth/tokens", "application/json", strings.NewReader(body))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	admin := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+resp.Header.Get("X-Subject-Token"))
	id := dmsv1.NewIdentityServiceClient(s.Conn)
	accounts, err := id.ListAccounts(admin, &dmsv1.ListAccountsRequest{})
	require.NoError(t, err)
	var def string
	for _, a := range accounts.GetAccounts() {
		if a.GetName() == "Default" {
			def = a.GetId()
		}
	}
	users := map[string]string{}
	user := func(account, name, project string, role dmsv1.Role) {
		u, err := id.CreateUser(admin, &dmsv1.CreateUserRequest{AccountId: account, User: &dmsv1.User{Name: name}, Password: name + "'s password"})
		require.NoError(t, err)
		users[name] = u.GetUser().GetId()
		if role != dmsv1.Role_ROLE_UNSPECIFIED {
			_, err = id.GrantRole(admin, &dmsv1.GrantRoleRequest{ProjectId: project, UserId: u.GetUser().GetId(), Role: role})
			require.NoError(t, err)
		}
	}
	user(def, "pete", server.DefaultProject, dmsv1.Role_ROLE_PRODUCER)
	user(def, "carl", server.DefaultProject, dmsv1.Role_ROLE_CONSUMER)
	user(def, "vera", server.DefaultProject, dmsv1.Role_ROLE_VIEWER)
	user(def, "nora", server.DefaultProject, dmsv1.Role_ROLE_UNSPECIFIED)
	acme, err := id.CreateAccount(admin, &dmsv1.CreateAccountRequest{Account: &dmsv1.Account{Name: "acme"}})
	require.NoError(t, err)
	pb, err := id.CreateProject(admin, &dmsv1.CreateProjectRequest{AccountId: acme.GetAccount().GetId(), Project: &dmsv1.Project{Name: "b"}})
	require.NoError(t, err)
	user(acme.GetAccount().GetId(), "bob", pb.GetProject().GetId(), dmsv1.Role_ROLE_ADMIN)
	return &authWorld{s: s, admin: admin, projectB: pb.GetProject().GetId(), users: users}
}

// dialAs opens a connection with PLAIN (or AMQPLAIN) credentials to a vhost.
func (w *authWorld) dialAs(user, password, vhost string, amqplain bool) (*amqp091.Connection, error) {
	cfg := amqp091.Config{Vhost: vhost, SASL: []amqp091.Authentication{&amqp091.PlainAuth{Username: user, Password: password}}}
	if amqplain {
		cfg.SASL = []amqp091.Authentication{&amqp091.AMQPlainAuth{Username: user, Password: password}}
	}
	return amqp091.DialConfig("amqp://"+w.s.AMQPAddr+"/", cfg)
}

func (w *authWorld) mustDial(t testing.TB, user, vhost string) *amqp091.Connection {
	t.Helper()
	name, _, _ := strings.Cut(user, "@")
	password := name + "'s password"
	if name == "admin" {
		password = authAdminPassword
	}
	conn, err := w.dialAs(user, password, vhost, false)
	require.NoError(t, err, "%s to %s", user, vhost)
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// refused asserts that err is a channel or connection exception 403
// whose text names reason.
func refused(t *testing.T, err error, reason string) {
	t.Helper()
	var ae *amqp091.Error
	require.True(t, errors.As(err, &ae), "want a 403, got %v", err)
	require.Equal(t, amqp091.AccessRefused, ae.Code, "%v", ae)
	require.Contains(t, ae.Reason, reason)
}

func TestLoginRefused(t *testing.T) {
	w := startAuth(t)
	for _, tc := range []struct {
		name, user, password, vhost, reason string
	}{
		{"wrong password", "admin", "guess", "/", "CREDENTIAL_INVALID"},
		{"unknown user", "mallory", "mallory's password", "/", "CREDENTIAL_INVALID"},
		{"guest", "guest", "guest", "/", "CREDENTIAL_INVALID"},
		{"no user name", "", "", "/", "UNAUTHENTICATED"},
		{"unknown vhost", "admin", authAdminPassword, "no-such-project", "CREDENTIAL_INVALID"},
		// bob is of account acme: the default project's account has no bob.
		{"user of another account", "bob", "bob's password", "/", "CREDENTIAL_INVALID"},
		{"right password, wrong account by suffix", "bob@" + server.DefaultProject, "bob's password", w.projectB, "CREDENTIAL_INVALID"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, amqplain := range []bool{false, true} {
				conn, err := w.dialAs(tc.user, tc.password, tc.vhost, amqplain)
				if err == nil {
					conn.Close()
					t.Fatalf("login as %q to %q accepted", tc.user, tc.vhost)
				}
				refused(t, err, tc.reason)
				// The same words whatever was wrong.
				if tc.reason == "CREDENTIAL_INVALID" {
					require.Contains(t, err.Error(), "the user name, password or vhost is wrong")
				}
			}
		})
	}
	// Malformed credentials: 403 at connection.start-ok, never a crash.
	for _, raw := range []rawAuth{{"PLAIN", "no separators"}, {"PLAIN", "a\x00b\x00c\x00d"}, {"PLAIN", "carl\x00admin\x00" + authAdminPassword},
		{"AMQPLAIN", "\x05LOGINS\xff\xff\xff\xff"}, {"AMQPLAIN", "garbage"}} {
		conn, err := amqp091.DialConfig("amqp://"+w.s.AMQPAddr+"/", amqp091.Config{SASL: []amqp091.Authentication{raw}})
		if err == nil {
			conn.Close()
			t.Fatalf("%s %q accepted", raw.mech, raw.resp)
		}
		var ae *amqp091.Error
		require.ErrorAs(t, err, &ae, "%s %q", raw.mech, raw.resp)
		require.Equal(t, amqp091.AccessRefused, ae.Code)
	}
	// Each refused login is in the audit trail, with who tried.
	require.Eventually(t, func() bool {
		recs, err := dmsv1.NewAuditServiceClient(w.s.Conn).ListAuditRecords(w.admin, &dmsv1.ListAuditRecordsRequest{Action: "amqp/Login", PageSize: 1000})
		if err != nil {
			return false
		}
		for _, r := range recs.GetRecords() {
			if strings.Contains(r.GetParameters(), "mallory") && r.GetPrincipal() == "refused" && r.GetReason() == "CREDENTIAL_INVALID" &&
				r.GetAuthMethod() == "amqp-amqplain" && r.GetSourceAddress() != "" {
				return true
			}
		}
		return false
	}, 20*time.Second, 100*time.Millisecond)
}

func TestLoginVhosts(t *testing.T) {
	w := startAuth(t)
	// AMQPLAIN as PLAIN.
	conn, err := w.dialAs("admin", authAdminPassword, "/", true)
	require.NoError(t, err)
	conn.Close()
	for _, tc := range []struct{ user, vhost, project string }{
		{"admin", "/", server.DefaultProject},
		{"admin", "", server.DefaultProject},
		{"admin", server.DefaultProject, server.DefaultProject},
		{"admin", "/" + server.DefaultProject, server.DefaultProject},
		// bob's account is the vhost's project's.
		{"bob", w.projectB, w.projectB},
		// {user}@{project}: "/" is that project, and a vhost name is of
		// its account.
		{"bob@" + w.projectB, "/", w.projectB},
		{"bob@" + w.projectB, "b", w.projectB},
		// The operator's administrator acts in every account's projects.
		{"admin@" + server.DefaultProject, w.projectB, w.projectB},
	} {
		t.Run(tc.user+" "+tc.vhost, func(t *testing.T) {
			conn := w.mustDial(t, tc.user, tc.vhost)
			ch, err := conn.Channel()
			require.NoError(t, err)
			name := fmt.Sprintf("v%d", time.Now().UnixNano())
			_, err = ch.QueueDeclare(name, true, false, false, false, nil)
			require.NoError(t, err)
			// The queue is the vhost's project's.
			_, err = dmsv1.NewQueueServiceClient(w.s.Conn).GetQueue(w.admin, &dmsv1.GetQueueRequest{Name: "projects/" + tc.project + "/queues/" + name})
			require.NoError(t, err)
		})
	}
}

func TestAuthorizeMethods(t *testing.T) {
	w := startAuth(t)
	ctx := context.Background()
	admin := w.mustDial(t, "admin", "/")
	ach, err := admin.Channel()
	require.NoError(t, err)
	_, err = ach.QueueDeclare("jobs", true, false, false, false, nil)
	require.NoError(t, err)
	require.NoError(t, ach.ExchangeDeclare("events", "fanout", true, false, false, false, nil))
	require.NoError(t, ach.QueueBind("jobs", "", "events", false, nil))

	// try runs f on a new channel of user's connection: nil when allowed,
	// the channel's exception when refused.
	conns := map[string]*amqp091.Connection{}
	try := func(user string, f func(ch *amqp091.Channel) error) error {
		conn := conns[user]
		if conn == nil {
			conn = w.mustDial(t, user, "/")
			conns[user] = conn
		}
		ch, err := conn.Channel()
		require.NoError(t, err)
		closed := ch.NotifyClose(make(chan *amqp091.Error, 1))
		err = f(ch)
		if err == nil {
			// A refused publish closes the channel asynchronously.
			require.NoError(t, ch.Confirm(false))
			_ = ch.Close()
			return nil
		}
		select {
		case e := <-closed:
			if e != nil {
				return e
			}
		case <-time.After(10 * time.Second):
			// Refused without closing the channel: err says how.
		}
		return err
	}
	publish := func(exchange, key string) func(ch *amqp091.Channel) error {
		return func(ch *amqp091.Channel) error {
			require.NoError(t, ch.Confirm(false))
			conf, err := ch.PublishWithDeferredConfirmWithContext(ctx, exchange, key, false, false, amqp091.Publishing{Body: []byte("x")})
			if err != nil {
				return err
			}
			// A refusal closes the channel, which completes the
			// confirmation unacked.
			<-conf.Done()
			if !conf.Acked() {
				return errors.New("not acked")
			}
			return nil
		}
	}
	ops := map[string]func(ch *amqp091.Channel) error{
		"declare": func(ch *amqp091.Channel) error {
			_, err := ch.QueueDeclare("jobs", true, false, false, false, nil)
			return err
		},
		"declare-passive": func(ch *amqp091.Channel) error {
			_, err := ch.QueueDeclarePassive("jobs", true, false, false, false, nil)
			return err
		},
		"declare-exchange": func(ch *amqp091.Channel) error {
			return ch.ExchangeDeclare("events", "fanout", true, false, false, false, nil)
		},
		"declare-exchange-passive": func(ch *amqp091.Channel) error {
			return ch.ExchangeDeclarePassive("events", "fanout", true, false, false, false, nil)
		},
		"bind":    func(ch *amqp091.Channel) error { return ch.QueueBind("jobs", "k", "amq.direct", false, nil) },
		"publish": publish("", "jobs"),
		// Through an exchange: the queues it routes to decide.
		"publish-exchange": publish("events", ""),
		"get": func(ch *amqp091.Channel) error {
			_, _, err := ch.Get("jobs", false)
			return err
		},
		"consume": func(ch *amqp091.Channel) error {
			_, err := ch.Consume("jobs", "", false, false, false, false, nil)
			return err
		},
		"purge": func(ch *amqp091.Channel) error {
			_, err := ch.QueuePurge("jobs", false)
			return err
		},
		"delete-exchange": func(ch *amqp091.Channel) error { return ch.ExchangeDelete("other", false, false) },
		"delete": func(ch *amqp091.Channel) error {
			_, err := ch.QueueDelete("nothing-here", false, false, false)
			return err
		},
	}
	read := []string{"declare-passive", "declare-exchange-passive"}
	allowed := map[string][]string{
		"pete": append([]string{"publish", "publish-exchange"}, read...),
		"carl": append([]string{"get", "consume", "purge"}, read...),
		"vera": read,
		"nora": nil,
	}
	for user, ok := range allowed {
		for op, f := range ops {
			err := try(user, f)
			if contains(ok, op) {
				require.NoError(t, err, "%s %s", user, op)
				continue
			}
			require.Error(t, err, "%s %s was allowed", user, op)
			reason := "PERMISSION_DENIED"
			refused(t, err, reason)
		}
	}
	// A denial is in the audit trail as the front end's action.
	require.Eventually(t, func() bool {
		recs, err := dmsv1.NewAuditServiceClient(w.s.Conn).ListAuditRecords(w.admin, &dmsv1.ListAuditRecordsRequest{Action: "amqp/ProduceMessages", PageSize: 1000})
		if err != nil {
			return false
		}
		for _, r := range recs.GetRecords() {
			if r.GetResource() == "projects/"+server.DefaultProject+"/queues/jobs" && r.GetReason() == "PERMISSION_DENIED" && !r.GetAllowed() {
				return true
			}
		}
		return false
	}, 20*time.Second, 100*time.Millisecond)
	// A refusal is a channel exception: the connection serves on.
	ch, err := conns["vera"].Channel()
	require.NoError(t, err)
	_, err = ch.QueueDeclarePassive("jobs", true, false, false, false, nil)
	require.NoError(t, err)

	// Every method is decided anew: a user deleted while connected is
	// refused from the next one on.
	_, err = dmsv1.NewIdentityServiceClient(w.s.Conn).DeleteUser(w.admin, &dmsv1.DeleteUserRequest{UserId: w.users["vera"]})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		err := try("vera", ops["declare-passive"])
		var ae *amqp091.Error
		return errors.As(err, &ae) && ae.Code == amqp091.AccessRefused && strings.Contains(ae.Reason, "CREDENTIAL_INVALID")
	}, 20*time.Second, 50*time.Millisecond)

	// Reply texts name the connection's vhost.
	bob := w.mustDial(t, "bob", w.projectB)
	ch, err = bob.Channel()
	require.NoError(t, err)
	_, err = ch.QueueDeclarePassive("nothing", true, false, false, false, nil)
	var ae *amqp091.Error
	require.ErrorAs(t, err, &ae)
	require.Equal(t, amqp091.NotFound, ae.Code)
	require.Contains(t, ae.Reason, "in vhost '"+w.projectB+"'")
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

// rawAuth sends a SASL response as given.
type rawAuth struct{ mech, resp string }

func (r rawAuth) Mechanism() string { return r.mech }
func (r rawAuth) Response() string  { return r.resp }
