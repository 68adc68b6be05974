package server

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/opendms/dms/services/authz"
	"github.com/opendms/dms/services/errs"
	"github.com/opendms/dms/services/identity"
	"github.com/opendms/dms/services/rpcstatus"
	"github.com/opendms/dms/services/server/modules"
	"github.com/opendms/dms/services/storage/partitionlog"
)

// Authentication and authorization of the gRPC listeners. With -auth.enabled
// the public listener authenticates `authorization: Bearer` (or
// x-auth-token) metadata and the internal one trusts the principal
// assertion that another front end of the cluster (the REST gateway) made
// after authenticating the HTTP request; a call to the internal listener
// without one is the cluster's own (authz.System). Every call of the public
// API is then decided by authz.Decide: here for the queue, producer and
// consumer services (by authz.Methods), in the handler for the identity API.

// initIdentity starts the identity cache and the authenticator and, with
// authentication on, makes the first identities.
func (s *Server) initIdentity(ctx context.Context) (modules.Stopper, error) {
	logger := s.logger.With("component", "identity")
	ring, err := s.storageKeyring()
	if err != nil {
		return nil, err
	}
	sealer := identity.NewSealer(ring)
	s.identityCache = identity.NewCache(s.cli, logger)
	s.identityCache.SetQueueResolver(func(project, ref string) (string, bool) {
		ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
		defer cancel()
		q, err := s.cache.ResolveQueue(ctx, project, ref)
		return q.GetId(), err == nil
	})
	if err := s.identityCache.Start(ctx); err != nil {
		return nil, err
	}
	tokenKey, err := identity.LoadTokenKey(ctx, s.cli)
	if err != nil {
		return nil, err
	}
	s.identityStore = identity.NewStore(s.cli, s.identityCache, sealer, s.now)
	s.authn = identity.NewAuthenticator(s.identityCache, sealer, tokenKey, s.cfg.Auth.TokenTTL, s.now)
	if !s.cfg.Auth.Enabled {
		return nil, nil
	}
	if !sealer.Enabled() {
		logger.Warn("access keys' secret keys are stored in etcd unsealed: no storage encryption keys are configured (-storage.encryption-key-file or DMS_STORAGE_KEYS)")
	}
	return nil, s.bootstrapIdentities(ctx, logger)
}

// storageKeyring loads the storage master keys, as the storage role does,
// to seal the secret keys of access keys; nil when none are configured.
func (s *Server) storageKeyring() (*partitionlog.Keyring, error) {
	if f := s.cfg.Storage.EncryptionKeyFile; f != "" {
		ring, err := partitionlog.ReadKeyringFile(f)
		if err != nil {
			return nil, fmt.Errorf("identity: loading storage encryption keys: %w", err)
		}
		return ring, nil
	}
	if env := strings.TrimSpace(os.Getenv("DMS_STORAGE_KEYS")); env != "" {
		ring, err := partitionlog.ParseKeyring(env)
		if err != nil {
			return nil, fmt.Errorf("identity: loading storage encryption keys from DMS_STORAGE_KEYS: %w", err)
		}
		return ring, nil
	}
	return nil, nil
}

// Bootstrap names.
const (
	bootstrapAccount  = "Default"
	bootstrapAdmin    = "admin"
	bootstrapProject  = "default"
	adminPasswordEnv  = "DMS_ADMIN_PASSWORD"
	adminPasswordFile = "admin-password"
)

// bootstrapIdentities makes, once per cluster, the account Default (the
// operator's), its administrator admin and the default project, so that a
// token for admin scoped to -protocols.default-project works at once.
func (s *Server) bootstrapIdentities(ctx context.Context, logger interface {
	Info(string, ...any)
	Warn(string, ...any)
}) error {
	store := s.identityStore
	account, err := store.AccountByName(bootstrapAccount)
	if err != nil {
		account, err = store.CreateAccount(ctx, bootstrapAccount)
		if errors.Is(err, errs.ErrIdentityAlreadyExists) { // another node was first
			account, err = store.AccountByName(bootstrapAccount)
		}
		if err != nil {
			return fmt.Errorf("identity bootstrap: account %s: %w", bootstrapAccount, err)
		}
	}
	if err := store.SetOperatorAccount(ctx, account.GetId()); err != nil {
		return fmt.Errorf("identity bootstrap: %w", err)
	}
	if _, err := store.UserByName(account.GetId(), bootstrapAdmin); err != nil {
		password, generated := os.LookupEnv(adminPasswordEnv)
		generated = !generated || password == ""
		if generated {
			b := make([]byte, 18)
			_, _ = rand.Read(b)
			password = base64.RawURLEncoding.EncodeToString(b)
		}
		if _, err := store.CreateUser(ctx, account.GetId(), bootstrapAdmin, password, true); err != nil && !errors.Is(err, errs.ErrIdentityAlreadyExists) {
			return fmt.Errorf("identity bootstrap: user %s: %w", bootstrapAdmin, err)
		} else if err == nil && generated {
			path := filepath.Join(s.cfg.Node.DataDir, adminPasswordFile)
			if err := os.WriteFile(path, []byte(password+"\n"), 0o600); err != nil {
				return fmt.Errorf("identity bootstrap: writing the admin password: %w", err)
			}
			logger.Warn("created user admin of account Default; its generated password is in "+path, "file", path)
		} else if err == nil {
			logger.Info("created user admin of account Default with the password in " + adminPasswordEnv)
		}
	}
	project := s.cfg.Protocols.DefaultProject
	if _, ok := store.Cache().ProjectAccount(project); !ok {
		if _, err := store.CreateProject(ctx, account.GetId(), project, bootstrapProject); err != nil && !errors.Is(err, errs.ErrIdentityAlreadyExists) {
			return fmt.Errorf("identity bootstrap: project %s: %w", project, err)
		}
	}
	return nil
}

// principalOf authenticates a gRPC call. ok is false for the cluster's own
// calls (the internal listener without an assertion).
func (s *Server) principalOf(ctx context.Context, public bool) (authz.Principal, bool) {
	md, _ := metadata.FromIncomingContext(ctx)
	if !public {
		v := md.Get(identity.AssertionHeader)
		if len(v) == 0 {
			return authz.Principal{}, false
		}
		if len(v) > 1 {
			return authz.Principal{Kind: authz.Refused, Refusal: errs.Wrapf(errs.ErrCredentialInvalid, "the call carries %d principal assertions", len(v))}, true
		}
		p, err := s.authn.ParseAssertion(v[0])
		if err != nil {
			return authz.Principal{Kind: authz.Refused, Refusal: err}, true
		}
		return p, true
	}
	var token string
	if v := md.Get("authorization"); len(v) > 0 {
		scheme, rest, _ := strings.Cut(v[0], " ")
		if !strings.EqualFold(scheme, "Bearer") {
			return authz.Principal{Kind: authz.Refused, Refusal: errs.Wrapf(errs.ErrCredentialInvalid, "the authorization metadata must be `Bearer <token>`")}, true
		}
		token = strings.TrimSpace(rest)
	} else if v := md.Get("x-auth-token"); len(v) > 0 {
		token = v[0]
	} else {
		return authz.AnonymousPrincipal, true
	}
	p, err := s.authn.Bearer(token)
	if err != nil {
		return authz.Principal{Kind: authz.Refused, Refusal: err}, true
	}
	return p, true
}

// authorizeCall decides a call of the public API.
func (s *Server) authorizeCall(ctx context.Context, p authz.Principal, method string, req any) error {
	action, known := authz.Methods[method]
	if !known {
		return rpcstatus.Error(errs.Wrapf(errs.ErrPermissionDenied, "%s is not a method of the public API", method))
	}
	if action == authz.HandlerDecides {
		noteDecision(ctx, p, "", authz.Resource{})
		return nil
	}
	msg, _ := req.(proto.Message)
	var res authz.Resource
	ok := msg != nil
	if ok {
		res, ok = authz.ResourceOf(msg)
	}
	// The operator's actions (the audit API) name no resource.
	if !ok && p.Kind == authz.User && action != authz.ManageAccounts {
		noteDecision(ctx, p, "request-names-no-resource", res)
		return rpcstatus.Error(errs.Wrapf(errs.ErrResourceNameInvalid, "the request names no project, queue or group in the form projects/{project}[/queues/{queue}[/groups/{group}]]"))
	}
	d := authz.Decide(s.identityCache, p, action, res)
	noteDecision(ctx, p, d.DecidedBy, res)
	if !d.Allowed {
		s.logger.Debug("denied", "principal", p.String(), "action", action, "resource", res.String(), "decided_by", d.DecidedBy, "err", d.Err)
		return rpcstatus.Error(d.Err)
	}
	return nil
}

// authUnary is the unary interceptor of a listener.
func (s *Server) authUnary(public bool) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if !s.cfg.Auth.Enabled {
			return handler(ctx, req)
		}
		p, ok := s.principalOf(ctx, public)
		if !ok {
			return handler(ctx, req)
		}
		if err := s.authorizeCall(ctx, p, info.FullMethod, req); err != nil {
			return nil, err
		}
		return handler(authz.WithPrincipal(ctx, p), req)
	}
}

// authStream is the stream interceptor of a listener: a stream's request
// messages are decided as they arrive (Subscribe's first names its group).
func (s *Server) authStream(public bool) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if !s.cfg.Auth.Enabled {
			return handler(srv, ss)
		}
		p, ok := s.principalOf(ss.Context(), public)
		if !ok {
			return handler(srv, ss)
		}
		if _, known := authz.Methods[info.FullMethod]; !known {
			return s.authorizeCall(ss.Context(), p, info.FullMethod, nil)
		}
		return handler(srv, &authorizedStream{ServerStream: ss, ctx: authz.WithPrincipal(ss.Context(), p), s: s, p: p, method: info.FullMethod})
	}
}

type authorizedStream struct {
	grpc.ServerStream
	ctx     context.Context
	s       *Server
	p       authz.Principal
	method  string
	decided bool
}

func (a *authorizedStream) Context() context.Context { return a.ctx }

func (a *authorizedStream) RecvMsg(m any) error {
	if err := a.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	// The first message opens the stream; a later one that opens it again
	// is decided again.
	if msg, ok := m.(proto.Message); !a.decided || (ok && authz.OpensStream(msg)) {
		if err := a.s.authorizeCall(a.ctx, a.p, a.method, m); err != nil {
			return err
		}
		a.decided = true
	}
	return nil
}

// checkListenAddrs refuses, with authentication off, every listen address
// that is not a loopback one, unless -auth.allow-anonymous says so.
func (s *Server) checkListenAddrs() error {
	if s.cfg.Auth.AllowAnonymous {
		return nil
	}
	if s.cfg.Auth.Enabled {
		// Every listener then authenticates: the APIs by token or AK/SK,
		// Kafka by SASL, AMQP by PLAIN/AMQPLAIN.
		return nil
	}
	addrs := []struct{ flag, addr string }{
		{"-server.grpc-addr", s.cfg.Server.GRPCAddr}, {"-server.http-addr", s.cfg.Server.HTTPAddr},
		{"-server.internal-grpc-addr", s.cfg.Server.InternalGRPCAddr}, {"-kafka.addr", s.cfg.Kafka.Addr}, {"-amqp.addr", s.cfg.AMQP.Addr},
	}
	if s.cfg.Etcd.Endpoints == "" {
		addrs = append(addrs, struct{ flag, addr string }{"-etcd.embed.client-addr", s.cfg.Etcd.EmbedClientAddr},
			struct{ flag, addr string }{"-etcd.embed.peer-addr", s.cfg.Etcd.EmbedPeerAddr})
	}
	for _, a := range addrs {
		if a.addr == "" {
			continue
		}
		if !isLoopback(a.addr) {
			return fmt.Errorf("%s=%s is not a loopback address, and authentication is off: anyone who reaches it could do anything. "+
				"Turn authentication on with -auth.enabled, or accept that with -auth.allow-anonymous", a.flag, a.addr)
		}
	}
	return nil
}

// isLoopback reports whether a listen address binds loopback interfaces
// only: localhost or a loopback IP; an empty host binds every interface.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// authHTTP authenticates the requests of the REST APIs and passes who made
// them, as a principal assertion in the outgoing gRPC metadata, to the
// roles they call; the credential itself goes no further. It serves POST
// /v3/auth/tokens too.
func (s *Server) authHTTP(next http.Handler) http.Handler {
	if !s.cfg.Auth.Enabled {
		return next
	}
	keystone := &identity.Keystone{Auth: s.authn, Region: s.cfg.Auth.Region}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path := r.URL.Path
		switch {
		case path == "/v3/auth/tokens" && r.Method == http.MethodPost:
			keystone.ServeHTTP(w, r)
			return
		case path == "/v3/auth/tokens" && r.Method == http.MethodGet:
			keystone.Validate(w, r)
			return
		case path == "/v3/auth/tokens":
			w.Header().Set("Allow", "GET, POST")
			http.Error(w, "/v3/auth/tokens serves GET and POST", http.StatusMethodNotAllowed)
			return
		case (path == "/v3" || path == "/v3/") && r.Method == http.MethodGet:
			keystone.Version(w, r)
			return
		}
		if strings.HasPrefix(path, "/debug/") {
			// Profiles and traces show what the process holds: for the
			// operator's administrators only.
			if d := authz.Decide(s.identityCache, s.authn.FromHTTP(r), authz.ManageAccounts, authz.Resource{}); !d.Allowed {
				status := http.StatusForbidden
				if k := errs.Of(d.Err).Kind; k == errs.KindUnauthenticated {
					status = http.StatusUnauthorized
				}
				http.Error(w, errs.Of(d.Err).Reason+": "+d.Err.Error(), status)
				return
			}
			next.ServeHTTP(w, r)
			return
		}
		if !strings.HasPrefix(path, "/v1/") && !strings.HasPrefix(path, "/v1.0/") {
			next.ServeHTTP(w, r)
			return
		}
		p := s.authn.FromHTTP(r)
		r.Header.Del("Authorization")
		r.Header.Del("X-Auth-Token")
		// grpc-gateway passes Grpc-Metadata-* headers on as metadata: none
		// may pose as the assertion made here.
		r.Header.Del("Grpc-Metadata-" + identity.AssertionHeader)
		ctx := metadata.AppendToOutgoingContext(r.Context(), identity.AssertionHeader, s.authn.Assert(p))
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}
