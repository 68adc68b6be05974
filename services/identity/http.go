package identity

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/authz"
	"github.com/opendms/dms/services/errs"
)

// MaxSignedBody is the largest body whose signature is checked: the DMS
// API's largest body (a send batch as JSON) with room to spare.
const MaxSignedBody = 8<<20 + 1<<16

// FromHTTP authenticates an HTTP request of the REST APIs: X-Auth-Token (as
// DMS clients send the token of POST /v3/auth/tokens), authorization:
// Bearer, or an AK/SK signature. A request without any is anonymous; one
// whose credential is refused gets a Refused principal, which authz turns
// into the refusal. The body of a signed request is read to check its hash
// and put back.
func (a *Authenticator) FromHTTP(r *http.Request) authz.Principal {
	refused := func(err error) authz.Principal { return authz.Principal{Kind: authz.Refused, Refusal: err} }
	if token := r.Header.Get("X-Auth-Token"); token != "" {
		p, err := a.Bearer(strings.TrimSpace(token))
		if err != nil {
			return refused(err)
		}
		return p
	}
	h := r.Header.Get("Authorization")
	switch {
	case h == "":
		return authz.AnonymousPrincipal
	case IsSigned(r):
		var body []byte
		if r.Body != nil && r.Header.Get("X-Sdk-Content-Sha256") == "" {
			var err error
			body, err = io.ReadAll(io.LimitReader(r.Body, MaxSignedBody+1))
			_ = r.Body.Close()
			if err != nil {
				return refused(errs.Wrapf(errs.ErrCredentialInvalid, "cannot read the body of a signed request: %v", err))
			}
			if len(body) > MaxSignedBody {
				return refused(errs.Wrapf(errs.ErrCredentialInvalid, "the body of a signed request is larger than %d bytes", MaxSignedBody))
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		p, err := a.SignedRequest(r, body)
		if err != nil {
			return refused(err)
		}
		return p
	}
	scheme, token, _ := strings.Cut(h, " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return refused(errs.Wrapf(errs.ErrCredentialInvalid, "the Authorization header must be `Bearer <token>` or `%s ...`", SignatureAlgorithm))
	}
	p, err := a.Bearer(strings.TrimSpace(token))
	if err != nil {
		return refused(err)
	}
	return p
}

// Keystone serves the OpenStack Keystone v3 token endpoint that DMS
// clients (OpenStack4j, python-openstacksdk, Huawei's SDKs with a
// password) call: POST /v3/auth/tokens with the password method and a
// project scope, answered 201 with the token in X-Subject-Token and the
// token body (user, project, roles, expiry, and a catalog with this
// endpoint as service type dms).
type Keystone struct {
	Auth   *Authenticator
	Region string
}

type keystoneRef struct {
	ID     string       `json:"id"`
	Name   string       `json:"name"`
	Domain *keystoneRef `json:"domain,omitempty"`
}

type keystoneRequest struct {
	Auth struct {
		Identity struct {
			Methods  []string `json:"methods"`
			Password struct {
				User struct {
					keystoneRef
					Password string `json:"password"`
				} `json:"user"`
			} `json:"password"`
		} `json:"identity"`
		Scope *struct {
			Project *keystoneRef `json:"project"`
		} `json:"scope"`
	} `json:"auth"`
}

func keystoneError(w http.ResponseWriter, status int, title, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"code": status, "title": title, "message": message}})
}

// Version answers GET /v3: the version document that Keystone clients
// (keystoneauth's discovery) read before they authenticate.
func (k *Keystone) Version(w http.ResponseWriter, r *http.Request) {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"version": map[string]any{
		"id": "v3.14", "status": "stable", "updated": "2020-04-07T00:00:00Z",
		"links":       []map[string]string{{"rel": "self", "href": scheme + "://" + r.Host + "/v3/"}},
		"media-types": []map[string]string{{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}},
	}})
}

// Validate answers GET /v3/auth/tokens: whether the token in
// X-Subject-Token is valid (200 with its user, project and expiry) or not
// (404, as Keystone), asked with any valid token in X-Auth-Token.
func (k *Keystone) Validate(w http.ResponseWriter, r *http.Request) {
	if _, err := k.Auth.Bearer(r.Header.Get("X-Auth-Token")); err != nil {
		keystoneError(w, http.StatusUnauthorized, "Unauthorized", "The request you have made requires authentication.")
		return
	}
	token := r.Header.Get("X-Subject-Token")
	if !strings.HasPrefix(token, sessionTokenPrefix) {
		keystoneError(w, http.StatusNotFound, "Not Found", "Could not find token.")
		return
	}
	claims, err := k.Auth.sessionClaims(token)
	if err != nil {
		keystoneError(w, http.StatusNotFound, "Not Found", "Could not find token.")
		return
	}
	u, ok := k.Auth.cache.user(claims.GetUserId())
	if _, found := k.Auth.cache.project(claims.GetProjectId()); claims.GetProjectId() != "" && !found {
		ok = false // scoped to a project deleted since
	}
	if !ok {
		keystoneError(w, http.StatusNotFound, "Not Found", "Could not find token.")
		return
	}
	account, _ := k.Auth.cache.account(u.GetAccountId())
	body := map[string]any{
		"methods": []string{"password"}, "issued_at": keystoneTime(claims.GetIssueTimeMs()), "expires_at": keystoneTime(claims.GetExpireTimeMs()),
		"user": map[string]any{"id": u.GetId(), "name": u.GetName(), "domain": map[string]string{"id": account.GetId(), "name": account.GetName()}},
	}
	if p, ok := k.Auth.cache.project(claims.GetProjectId()); ok {
		owner, _ := k.Auth.cache.account(p.GetAccountId())
		body["project"] = map[string]any{"id": p.GetId(), "name": p.GetName(), "domain": map[string]string{"id": owner.GetId(), "name": owner.GetName()}}
		body["roles"] = k.rolesOf(u.GetId(), u.GetAccountAdmin() && (u.GetAccountId() == p.GetAccountId() || u.GetAccountId() == k.Auth.cache.OperatorAccount()), p.GetId())
	}
	w.Header().Set("X-Subject-Token", token)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"token": body})
}

// ServeHTTP implements http.Handler for POST /v3/auth/tokens.
func (k *Keystone) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var req keystoneRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil {
		keystoneError(w, http.StatusBadRequest, "Bad Request", "the body is not a Keystone v3 auth request: "+err.Error())
		return
	}
	id := req.Auth.Identity
	if len(id.Methods) != 1 || id.Methods[0] != "password" {
		keystoneError(w, http.StatusBadRequest, "Bad Request", `only the "password" method is served: auth.identity.methods must be ["password"]`)
		return
	}
	user := id.Password.User
	ref := UserRef{ID: user.ID, Name: user.Name}
	if user.Domain != nil {
		ref.DomainID, ref.DomainName = user.Domain.ID, user.Domain.Name
	}
	if ref.ID == "" && (ref.Name == "" || (ref.DomainID == "" && ref.DomainName == "")) {
		keystoneError(w, http.StatusBadRequest, "Bad Request", "auth.identity.password.user needs an id, or a name and a domain (id or name)")
		return
	}
	u, err := k.Auth.Password(r.Context(), ref, user.Password)
	if err != nil {
		keystoneError(w, http.StatusUnauthorized, "Unauthorized", "The request you have made requires authentication.")
		return
	}
	cache := k.Auth.cache
	account, _ := cache.account(u.GetAccountId())
	var projectID string
	if req.Auth.Scope != nil && req.Auth.Scope.Project != nil {
		sp := req.Auth.Scope.Project
		projectID = sp.ID
		if projectID == "" {
			domain := u.GetAccountId()
			if sp.Domain != nil && sp.Domain.ID != "" {
				domain = sp.Domain.ID
			} else if sp.Domain != nil && sp.Domain.Name != "" {
				if a, ok := cache.accountByName(sp.Domain.Name); ok {
					domain = a.GetId()
				}
			}
			if p, ok := cache.projectByName(domain, sp.Name); ok {
				projectID = p.GetId()
			}
		}
	}
	var roles []map[string]string
	var project map[string]any
	if req.Auth.Scope != nil && req.Auth.Scope.Project != nil {
		p, ok := cache.project(projectID)
		if ok {
			roles = k.rolesOf(u.GetId(), u.GetAccountAdmin() && (u.GetAccountId() == p.GetAccountId() || u.GetAccountId() == cache.OperatorAccount()), projectID)
		}
		if !ok || len(roles) == 0 {
			// As Keystone: a scope the user has no role in is refused.
			keystoneError(w, http.StatusUnauthorized, "Unauthorized", "the user has no role in the requested project")
			return
		}
		owner, _ := cache.account(p.GetAccountId())
		project = map[string]any{"id": p.GetId(), "name": p.GetName(), "domain": map[string]string{"id": owner.GetId(), "name": owner.GetName()}}
	}
	token, claims := k.Auth.IssueToken(u.GetId(), projectID)
	body := map[string]any{
		"methods":    []string{"password"},
		"issued_at":  keystoneTime(claims.GetIssueTimeMs()),
		"expires_at": keystoneTime(claims.GetExpireTimeMs()),
		"user": map[string]any{
			"id": u.GetId(), "name": u.GetName(),
			"domain": map[string]string{"id": account.GetId(), "name": account.GetName()},
		},
	}
	if project != nil {
		body["project"] = project
		body["roles"] = roles
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		base := scheme + "://" + r.Host
		body["catalog"] = []map[string]any{{
			"id": "dms", "type": "dms", "name": "dms",
			"endpoints": []map[string]string{{
				"id": "dms-public", "interface": "public", "region": k.Region, "region_id": k.Region,
				"url": base + "/v1.0/" + projectID,
			}},
		}}
	}
	w.Header().Set("X-Subject-Token", token)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(map[string]any{"token": body})
}

func (k *Keystone) rolesOf(userID string, admin bool, project string) []map[string]string {
	var out []map[string]string
	seen := map[string]bool{}
	add := func(name string) {
		if !seen[name] {
			seen[name] = true
			out = append(out, map[string]string{"id": name, "name": name})
		}
	}
	if admin {
		add("admin")
	}
	for _, r := range k.Auth.cache.Roles(project, userID) {
		add(authz.RoleName(r))
	}
	return out
}

func keystoneTime(ms int64) string {
	return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000000Z")
}

// ErrNotRole is returned for a role name that is none of the four.
var ErrNotRole = errors.New("identity: not a role")

// ParseRole reads admin, producer, consumer or viewer.
func ParseRole(name string) (dmsv1.Role, error) {
	for _, r := range []dmsv1.Role{dmsv1.Role_ROLE_ADMIN, dmsv1.Role_ROLE_PRODUCER, dmsv1.Role_ROLE_CONSUMER, dmsv1.Role_ROLE_VIEWER} {
		if authz.RoleName(r) == name {
			return r, nil
		}
	}
	return 0, ErrNotRole
}
