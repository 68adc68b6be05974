package kafka_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	"google.golang.org/grpc/metadata"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/server"
	"github.com/opendms/dms/services/testserver"
)

const saslAdminPassword = "correct-horse-battery-staple"

// saslWorld is a dmsd with authentication on and the users the SASL tests
// log in as: admin; nora, with no role; vera, a viewer of the default project; pete, a
// producer there; and bob, administrator of project B of account acme.
type saslWorld struct {
	s        *testserver.Server
	projectB string
	admin    context.Context
	identity dmsv1.IdentityServiceClient
	users    map[string]string // name → id
}

func startSASL(t *testing.T) *saslWorld {
	t.Helper()
	t.Setenv("DMS_ADMIN_PASSWORD", saslAdminPassword)
	s := startServer(t, "-auth.enabled")
	ctx := context.Background()
	body := fmt.Sprintf(`{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"admin","password":%q,"domain":{"name":"Default"}}}}}}`, saslAdminPassword)
	resp, err := http.Post("http://"+s.HTTPAddr+"/v3/auth/tokens", "application/json", strings.NewReader(body))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	admin := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+resp.Header.Get("X-Subject-Token"))
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
	user := func(account, name string, project string, role dmsv1.Role) {
		u, err := id.CreateUser(admin, &dmsv1.CreateUserRequest{AccountId: account, User: &dmsv1.User{Name: name}, Password: name + "'s password"})
		require.NoError(t, err)
		users[name] = u.GetUser().GetId()
		if role != dmsv1.Role_ROLE_UNSPECIFIED {
			_, err = id.GrantRole(admin, &dmsv1.GrantRoleRequest{ProjectId: project, UserId: u.GetUser().GetId(), Role: role})
			require.NoError(t, err)
		}
	}
	user(def, "nora", server.DefaultProject, dmsv1.Role_ROLE_UNSPECIFIED)
	user(def, "vera", server.DefaultProject, dmsv1.Role_ROLE_VIEWER)
	user(def, "pete", server.DefaultProject, dmsv1.Role_ROLE_PRODUCER)
	acme, err := id.CreateAccount(admin, &dmsv1.CreateAccountRequest{Account: &dmsv1.Account{Name: "acme"}})
	require.NoError(t, err)
	pb, err := id.CreateProject(admin, &dmsv1.CreateProjectRequest{AccountId: acme.GetAccount().GetId(), Project: &dmsv1.Project{Name: "b"}})
	require.NoError(t, err)
	user(acme.GetAccount().GetId(), "bob", pb.GetProject().GetId(), dmsv1.Role_ROLE_ADMIN)
	return &saslWorld{s: s, projectB: pb.GetProject().GetId(), admin: admin, identity: id, users: users}
}

func (w *saslWorld) client(t *testing.T, mech sasl.Mechanism, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(w.s.KafkaAddr), kgo.SASL(mech), kgo.MetadataMinAge(100 * time.Millisecond), kgo.AllowAutoTopicCreation()}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(cl.Close)
	return cl
}

func plainAuth(user, password string) sasl.Mechanism {
	return plain.Auth{User: user, Pass: password}.AsMechanism()
}

// produce sends one record and returns the error of the produce.
func produce(t *testing.T, cl *kgo.Client, topic, value string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte(value)}).FirstErr()
}

// metadataErr is the error of a Metadata request.
func metadataErr(cl *kgo.Client) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := kmsg.NewPtrMetadataRequest().RequestWith(ctx, cl)
	return err
}

// topicNames lists the topics a client's Metadata shows.
func topicNames(t *testing.T, cl *kgo.Client) []string {
	t.Helper()
	req := kmsg.NewPtrMetadataRequest()
	resp, err := req.RequestWith(context.Background(), cl)
	require.NoError(t, err)
	var names []string
	for _, tp := range resp.Topics {
		names = append(names, *tp.Topic)
	}
	return names
}

func TestSASLPlain(t *testing.T) {
	w := startSASL(t)

	t.Run("right password", func(t *testing.T) {
		cl := w.client(t, plainAuth("admin", saslAdminPassword))
		require.NoError(t, produce(t, cl, "orders", "one"))
		require.Contains(t, topicNames(t, cl), "orders")
	})
	t.Run("wrong password", func(t *testing.T) {
		cl := w.client(t, plainAuth("admin", "not the password"))
		require.ErrorIs(t, metadataErr(cl), kerr.SaslAuthenticationFailed)
	})
	t.Run("unknown user or project", func(t *testing.T) {
		for _, u := range []string{"nobody", "admin@" + w.projectB, "admin@not-a-project", "bob"} {
			cl := w.client(t, plainAuth(u, saslAdminPassword))
			require.ErrorIs(t, metadataErr(cl), kerr.SaslAuthenticationFailed, u)
		}
	})
	t.Run("viewer may not produce or join a group", func(t *testing.T) {
		cl := w.client(t, plainAuth("vera", "vera's password"))
		require.Contains(t, topicNames(t, cl), "orders")
		require.ErrorIs(t, produce(t, cl, "orders", "three"), kerr.TopicAuthorizationFailed)
		join := kmsg.NewPtrJoinGroupRequest()
		join.Group, join.ProtocolType, join.SessionTimeoutMillis, join.RebalanceTimeoutMillis = "g", "consumer", 10000, 10000
		join.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "range"}}
		resp, err := join.RequestWith(context.Background(), cl)
		require.NoError(t, err)
		require.Equal(t, kerr.GroupAuthorizationFailed.Code, resp.ErrorCode)
		commit := kmsg.NewPtrOffsetCommitRequest()
		commit.Group = "g"
		commit.Topics = []kmsg.OffsetCommitRequestTopic{{Topic: "orders", Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: 0, Offset: 1}}}}
		cresp, err := commit.RequestWith(context.Background(), cl)
		require.NoError(t, err)
		require.Len(t, cresp.Topics, 1)
		require.Equal(t, "orders", cresp.Topics[0].Topic)
		require.Equal(t, kerr.GroupAuthorizationFailed.Code, cresp.Topics[0].Partitions[0].ErrorCode)
	})
	t.Run("producer may produce but not create topics", func(t *testing.T) {
		cl := w.client(t, plainAuth("pete", "pete's password"))
		require.NoError(t, produce(t, cl, "orders", "four"))
		require.ErrorIs(t, produce(t, cl, "pete-new-topic", "five"), kerr.TopicAuthorizationFailed)
	})
	t.Run("a user of project B sees only B's topics", func(t *testing.T) {
		bob := w.client(t, plainAuth("bob@"+w.projectB, "bob's password"))
		require.NotContains(t, topicNames(t, bob), "orders")
		require.NoError(t, produce(t, bob, "bobs-topic", "b1"))
		require.Equal(t, []string{"bobs-topic"}, topicNames(t, bob))
		admin := w.client(t, plainAuth("admin", saslAdminPassword))
		require.NotContains(t, topicNames(t, admin), "bobs-topic")
	})
	t.Run("requests before authentication close the connection", func(t *testing.T) {
		c := dialRaw(t, w.s.KafkaAddr)
		versions := c.roundTrip(kmsg.NewPtrApiVersionsRequest()).(*kmsg.ApiVersionsResponse)
		require.Zero(t, versions.ErrorCode)
		c.send(kmsg.NewPtrMetadataRequest())
		require.True(t, c.closed())
	})
}

func TestSASLSCRAM(t *testing.T) {
	w := startSASL(t)
	mechs := map[string]func(user, pass string) sasl.Mechanism{
		"SHA-256": func(u, p string) sasl.Mechanism { return scram.Auth{User: u, Pass: p}.AsSha256Mechanism() },
		"SHA-512": func(u, p string) sasl.Mechanism { return scram.Auth{User: u, Pass: p}.AsSha512Mechanism() },
	}
	for name, mech := range mechs {
		t.Run(name, func(t *testing.T) {
			admin := w.client(t, mech("admin", saslAdminPassword))
			topic := "scram-" + strings.ToLower(name)
			require.NoError(t, produce(t, admin, topic, "one"))

			require.ErrorIs(t, metadataErr(w.client(t, mech("admin", "not the password"))), kerr.SaslAuthenticationFailed)
			require.ErrorIs(t, metadataErr(w.client(t, mech("nobody", saslAdminPassword))), kerr.SaslAuthenticationFailed)
			require.ErrorIs(t, metadataErr(w.client(t, mech("bob", "bob's password"))), kerr.SaslAuthenticationFailed,
				"bob is not a user of the default project's account")

			vera := w.client(t, mech("vera", "vera's password"))
			require.Contains(t, topicNames(t, vera), topic)
			require.ErrorIs(t, produce(t, vera, topic, "two"), kerr.TopicAuthorizationFailed)

			bob := w.client(t, mech("bob@"+w.projectB, "bob's password"))
			require.NotContains(t, topicNames(t, bob), topic)
		})
	}
}

// TestSASLEveryAPIRefusedRoundTrips sends every API the server advertises,
// at every version, on a connection of a user with no role: each refusal
// (the mirrored group refusals above all) must decode at its version.
func TestSASLEveryAPIRefusedRoundTrips(t *testing.T) {
	w := startSASL(t)
	c := dialRaw(t, w.s.KafkaAddr)
	versions := c.roundTrip(&kmsg.ApiVersionsRequest{Version: 0}).(*kmsg.ApiVersionsResponse)
	hs := c.roundTrip(&kmsg.SASLHandshakeRequest{Version: 1, Mechanism: "PLAIN"}).(*kmsg.SASLHandshakeResponse)
	require.Zero(t, hs.ErrorCode)
	auth := c.roundTrip(&kmsg.SASLAuthenticateRequest{Version: 2, SASLAuthBytes: []byte("\x00nora\x00nora's password")}).(*kmsg.SASLAuthenticateResponse)
	require.Zero(t, auth.ErrorCode, "%v", auth.ErrorMessage)
	refusals := 0
	for _, k := range versions.ApiKeys {
		switch k.ApiKey {
		case kmsg.ApiVersions.Int16(), kmsg.SASLHandshake.Int16(), kmsg.SASLAuthenticate.Int16():
			continue
		}
		for v := k.MinVersion; v <= k.MaxVersion; v++ {
			req := kmsg.RequestForKey(k.ApiKey)
			req.SetVersion(v)
			if prepare := sweepRequests[k.ApiKey]; prepare != nil {
				prepare(req)
			}
			resp := c.roundTrip(req)
			require.Equal(t, v, resp.GetVersion(), "%s v%d", kmsg.NameForKey(k.ApiKey), v)
			if f := reflect.ValueOf(resp).Elem().FieldByName("ErrorCode"); f.IsValid() && f.Int() == int64(kerr.GroupAuthorizationFailed.Code) {
				refusals++
			}
		}
	}
	require.NotZero(t, refusals)
}

// TestSASLHandshakeV0 authenticates as clients before Kafka 1.0 do: after
// a SaslHandshake v0 the PLAIN token goes as a bare size-prefixed frame,
// answered by a bare (empty) frame; a wrong password closes the connection.
func TestSASLHandshakeV0(t *testing.T) {
	w := startSASL(t)
	bare := func(c *rawClient, token string) {
		frame := binary.BigEndian.AppendUint32(nil, uint32(len(token)))
		_, err := c.conn.Write(append(frame, token...))
		require.NoError(t, err)
	}
	c := dialRaw(t, w.s.KafkaAddr)
	hs := c.roundTrip(&kmsg.SASLHandshakeRequest{Version: 0, Mechanism: "PLAIN"}).(*kmsg.SASLHandshakeResponse)
	require.Zero(t, hs.ErrorCode)
	bare(c, "\x00pete\x00pete's password")
	answer, err := c.readFrame()
	require.NoError(t, err)
	require.Empty(t, answer)
	md := c.roundTrip(&kmsg.MetadataRequest{Version: 12}).(*kmsg.MetadataResponse)
	require.NotNil(t, md)

	c = dialRaw(t, w.s.KafkaAddr)
	c.roundTrip(&kmsg.SASLHandshakeRequest{Version: 0, Mechanism: "PLAIN"})
	bare(c, "\x00pete\x00not the password")
	require.True(t, c.closed())
}

// TestSASLChangesTakeEffect: a role revoked is refused from the next
// request of a connection already authenticated; a password set again
// makes new SCRAM credentials, so the old password no longer logs in and
// the new one does.
func TestSASLChangesTakeEffect(t *testing.T) {
	w := startSASL(t)
	admin := w.client(t, plainAuth("admin", saslAdminPassword))
	require.NoError(t, produce(t, admin, "changes", "zero"))

	pete := w.client(t, scram.Auth{User: "pete", Pass: "pete's password"}.AsSha512Mechanism())
	require.NoError(t, produce(t, pete, "changes", "one"))
	_, err := w.identity.RevokeRole(w.admin, &dmsv1.RevokeRoleRequest{ProjectId: server.DefaultProject, UserId: w.users["pete"], Role: dmsv1.Role_ROLE_PRODUCER})
	require.NoError(t, err)
	require.ErrorIs(t, produce(t, pete, "changes", "two"), kerr.TopicAuthorizationFailed)

	_, err = w.identity.SetUserPassword(w.admin, &dmsv1.SetUserPasswordRequest{UserId: w.users["vera"], Password: "vera's new password"})
	require.NoError(t, err)
	for _, mech := range []sasl.Mechanism{
		scram.Auth{User: "vera", Pass: "vera's password"}.AsSha256Mechanism(),
		scram.Auth{User: "vera", Pass: "vera's password"}.AsSha512Mechanism(),
		plainAuth("vera", "vera's password"),
	} {
		require.ErrorIs(t, metadataErr(w.client(t, mech)), kerr.SaslAuthenticationFailed, mech.Name())
	}
	for _, mech := range []sasl.Mechanism{
		scram.Auth{User: "vera", Pass: "vera's new password"}.AsSha256Mechanism(),
		scram.Auth{User: "vera", Pass: "vera's new password"}.AsSha512Mechanism(),
		plainAuth("vera", "vera's new password"),
	} {
		require.NoError(t, metadataErr(w.client(t, mech)), mech.Name())
	}
}
