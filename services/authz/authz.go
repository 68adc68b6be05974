// Package authz is the one authorization point of DMS: every front end
// (gRPC, the native REST API, the DMS v1.0 REST API, and the Kafka and AMQP
// adapters) asks Decide whether a principal may do an action on a
// resource, and gets the answer with what decided it. It holds no state:
// the identities and role bindings come from a Directory (the identity
// cache), so that a decision costs a few map lookups.
//
// The rules, in order:
//
//  1. The system (another role of the cluster) may do everything.
//  2. An anonymous principal may do nothing (UNAUTHENTICATED); a refused
//     credential is refused with its own reason.
//  3. A project must be registered, and a credential restricted to a
//     project (a project-scoped token) acts in that project only
//     (PROJECT_SCOPE_MISMATCH).
//  4. A statement of the queue's policy that denies the action to the
//     principal denies it, whatever else would allow it.
//  5. Administrators of the operator's account may do everything;
//     administrators of an account everything in its projects; a role of
//     the user in the project that allows the action allows it. (Not for a
//     credential scoped to another project.)
//  6. A statement of the queue's policy that allows the action to the
//     principal (the user, or a project it has a role in or is scoped to)
//     allows it: that is how a queue is shared.
//  7. Otherwise: denied (PERMISSION_DENIED, or PROJECT_SCOPE_MISMATCH for a
//     credential scoped to another project).
//
// A protocol front end (Kafka, AMQP) authenticates its connection with the
// identity package (identity.Authenticator.PasswordPrincipal for SASL
// PLAIN, Bearer for a token), keeps the principal with the connection, and
// before each request calls
//
//	d := authz.Decide(directory, principal, authz.ProduceMessages, authz.Resource{Project: p, Queue: queueID})
//
// where directory is the process's identity cache (server.Server has it);
// a denial's d.Err carries the stable reason (errs.Of(d.Err).Reason) to map
// to the protocol's error code, and d.DecidedBy says why.
package authz

import (
	"context"
	"fmt"
	"slices"
	"strings"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/errs"
)

// Action is what a principal wants to do: the names are DMS's policy
// actions where DMS has one (GetQueue, CreateGroup, GetGroups, DeleteGroup,
// ProduceMessages, ConsumeMessages).
type Action string

// The actions on queues and messages.
const (
	CreateQueue     Action = "CreateQueue"
	ListQueues      Action = "ListQueues"
	GetQueue        Action = "GetQueue"
	UpdateQueue     Action = "UpdateQueue"
	DeleteQueue     Action = "DeleteQueue"
	CreateGroup     Action = "CreateGroup"
	GetGroups       Action = "GetGroups"
	DeleteGroup     Action = "DeleteGroup"
	ProduceMessages Action = "ProduceMessages"
	// ConsumeMessages covers receiving, acknowledging, dead letters,
	// seeking and redriving a group: what a consumer of a group does.
	ConsumeMessages Action = "ConsumeMessages"
	// ManageQueuePolicy reads and sets a queue's policy.
	ManageQueuePolicy Action = "ManageQueuePolicy"
)

// The actions of the identity API. Their resource is an account (and a
// user, for credentials).
const (
	// ManageAccounts creates and lists accounts: the operator's.
	ManageAccounts Action = "ManageAccounts"
	// ManageIdentities manages an account's projects, users and roles.
	ManageIdentities Action = "ManageIdentities"
	// ManageCredentials manages a user's access keys and API tokens; a
	// user may manage their own.
	ManageCredentials Action = "ManageCredentials"
)

// QueueActions lists the actions on queues and messages, for explain
// calls and tests.
var QueueActions = []Action{CreateQueue, ListQueues, GetQueue, UpdateQueue, DeleteQueue, CreateGroup, GetGroups, DeleteGroup, ProduceMessages, ConsumeMessages, ManageQueuePolicy}

// policyActions are the actions a queue policy can allow or deny.
var policyActions = []Action{GetQueue, CreateGroup, GetGroups, DeleteGroup, ProduceMessages, ConsumeMessages}

// Kind says what sort of principal a call acts for.
type Kind int

// The kinds of principal.
const (
	// Anonymous carries no credential.
	Anonymous Kind = iota
	// User authenticated as a user of an account.
	User
	// Refused carried a credential that authentication refused; Refusal
	// says why.
	Refused
	// System is another role of the cluster acting for itself.
	System
)

// Principal is who a call acts for.
type Principal struct {
	Kind   Kind
	UserID string
	// ScopeProject restricts the principal to one project (a
	// project-scoped token); empty for none.
	ScopeProject string
	// Method is how it authenticated: token, api-token, access-key.
	Method string
	// Refusal is why authentication refused the credential (Kind Refused).
	Refusal error
}

// SystemPrincipal is the cluster acting for itself.
var SystemPrincipal = Principal{Kind: System}

// AnonymousPrincipal carries no credential.
var AnonymousPrincipal = Principal{Kind: Anonymous}

func (p Principal) String() string {
	switch p.Kind {
	case User:
		if p.ScopeProject != "" {
			return "user:" + p.UserID + "@" + p.ScopeProject
		}
		return "user:" + p.UserID
	case System:
		return "system"
	case Refused:
		return "refused"
	}
	return "anonymous"
}

// Resource is what an action is done on. Project is set for queue actions;
// Account for identity actions; User for credential actions.
type Resource struct {
	Project string
	Queue   string // id or display name; empty for project-level actions
	Account string
	User    string
}

func (r Resource) String() string {
	switch {
	case r.Queue != "":
		return "projects/" + r.Project + "/queues/" + r.Queue
	case r.Project != "":
		return "projects/" + r.Project
	case r.User != "":
		return "accounts/" + r.Account + "/users/" + r.User
	case r.Account != "":
		return "accounts/" + r.Account
	}
	return "cluster"
}

// UserInfo is what decisions need of a user.
type UserInfo struct {
	ID           string
	AccountID    string
	AccountAdmin bool
}

// Directory answers the questions a decision asks; the identity cache
// implements it from memory.
type Directory interface {
	// User returns a user, false if there is none (deleted).
	User(id string) (UserInfo, bool)
	// ProjectAccount returns the account owning a project, false if the
	// project is not registered.
	ProjectAccount(project string) (string, bool)
	// Roles returns the user's roles in a project.
	Roles(project, userID string) []dmsv1.Role
	// OperatorAccount is the account whose administrators administer every
	// account (the `Default` one made on first start).
	OperatorAccount() string
	// QueuePolicy returns the policy of a queue of a project (named by id
	// or display name), nil when it has none.
	QueuePolicy(project, queue string) *dmsv1.QueuePolicy
}

// Decision is the answer of Decide.
type Decision struct {
	Allowed bool
	// DecidedBy names the rule, role or policy that decided:
	// `system`, `account-admin:{account}`, `role:producer@{project}`,
	// `scope:{project}`, `unauthenticated`, `default-deny`...
	DecidedBy string
	// Err is the denial as a domain error with its stable reason (nil when
	// allowed).
	Err error
}

func allow(by string) Decision { return Decision{Allowed: true, DecidedBy: by} }

func deny(by string, sentinel *errs.Error, format string, args ...any) Decision {
	return Decision{DecidedBy: by, Err: errs.Wrapf(sentinel, format, args...)}
}

// roleActions is what each project role allows.
var roleActions = map[dmsv1.Role][]Action{
	dmsv1.Role_ROLE_ADMIN:    {CreateQueue, ListQueues, GetQueue, UpdateQueue, DeleteQueue, CreateGroup, GetGroups, DeleteGroup, ProduceMessages, ConsumeMessages, ManageQueuePolicy},
	dmsv1.Role_ROLE_PRODUCER: {ListQueues, GetQueue, GetGroups, ProduceMessages},
	dmsv1.Role_ROLE_CONSUMER: {ListQueues, GetQueue, GetGroups, ConsumeMessages},
	dmsv1.Role_ROLE_VIEWER:   {ListQueues, GetQueue, GetGroups},
}

// RoleAllows reports whether a project role allows an action.
func RoleAllows(role dmsv1.Role, action Action) bool {
	return slices.Contains(roleActions[role], action)
}

// RoleName is the short name of a role: admin, producer, consumer, viewer.
func RoleName(role dmsv1.Role) string {
	switch role {
	case dmsv1.Role_ROLE_ADMIN:
		return "admin"
	case dmsv1.Role_ROLE_PRODUCER:
		return "producer"
	case dmsv1.Role_ROLE_CONSUMER:
		return "consumer"
	case dmsv1.Role_ROLE_VIEWER:
		return "viewer"
	}
	return role.String()
}

// Decide says whether p may do action on res.
func Decide(dir Directory, p Principal, action Action, res Resource) Decision {
	d := decide(dir, p, action, res)
	if o, ok := dir.(DenialObserver); ok && !d.Allowed {
		o.Denied(p, action, res, d)
	}
	return d
}

// DenialObserver is told of every denial Decide makes with a Directory
// that implements it: how a front end that decides in its own code (the
// Kafka adapter) has its denials in the audit trail without code of its
// own, given such a directory.
type DenialObserver interface {
	Denied(p Principal, action Action, res Resource, d Decision)
}

func decide(dir Directory, p Principal, action Action, res Resource) Decision {
	switch p.Kind {
	case System:
		return allow("system")
	case Anonymous:
		return deny("unauthenticated", errs.ErrUnauthenticated, "%s on %s needs a credential: an X-Auth-Token or authorization: Bearer token, or an AK/SK-signed request", action, res)
	case Refused:
		if p.Refusal != nil {
			return Decision{DecidedBy: "authentication", Err: p.Refusal}
		}
		return deny("authentication", errs.ErrCredentialInvalid, "the credential was refused")
	}
	user, ok := dir.User(p.UserID)
	if !ok {
		return deny("authentication", errs.ErrCredentialInvalid, "the credential's user %s no longer exists", p.UserID)
	}
	if p.ScopeProject != "" {
		if _, ok := dir.ProjectAccount(p.ScopeProject); !ok {
			// A session token is not recorded: deleting its project is
			// what revokes it.
			return deny("authentication", errs.ErrCredentialInvalid, "the credential is scoped to project %s, which no longer exists", p.ScopeProject)
		}
	}
	operator := user.AccountAdmin && user.AccountID == dir.OperatorAccount()
	switch action {
	case ManageAccounts:
		if operator && p.ScopeProject == "" {
			return allow("account-admin:" + user.AccountID)
		}
		return deny("default-deny", errs.ErrPermissionDenied, "%s needs an administrator of the operator's account with an unscoped credential", action)
	case ManageIdentities, ManageCredentials:
		if p.ScopeProject != "" {
			return deny("scope:"+p.ScopeProject, errs.ErrPermissionDenied, "a token scoped to project %s cannot %s; use an unscoped credential", p.ScopeProject, action)
		}
		if operator {
			return allow("account-admin:" + user.AccountID)
		}
		if user.AccountAdmin && user.AccountID == res.Account {
			return allow("account-admin:" + user.AccountID)
		}
		if action == ManageCredentials && res.User == user.ID {
			return allow("self")
		}
		return deny("default-deny", errs.ErrPermissionDenied, "%s on %s needs an administrator of account %s", action, res, res.Account)
	}
	if res.Project == "" {
		return deny("default-deny", errs.ErrPermissionDenied, "%s names no project", action)
	}
	account, ok := dir.ProjectAccount(res.Project)
	if !ok {
		// Not "not found": who may not see a project may not learn of it.
		return deny("default-deny", errs.ErrPermissionDenied, "%s on %s is not allowed: project %s is not registered or not yours", action, res, res.Project)
	}
	inScope := p.ScopeProject == "" || p.ScopeProject == res.Project
	var policy *dmsv1.QueuePolicy
	if res.Queue != "" && slices.Contains(policyActions, action) {
		policy = dir.QueuePolicy(res.Project, res.Queue)
	}
	if i, ok := matchStatement(dir, policy, dmsv1.PolicyEffect_POLICY_EFFECT_DENY, p, user, action); ok {
		return deny(fmt.Sprintf("policy:%s#%d", res, i), errs.ErrPermissionDenied, "%s on %s is denied by statement %d of the queue's policy", action, res, i)
	}
	if inScope {
		if operator || (user.AccountAdmin && user.AccountID == account) {
			return allow("account-admin:" + user.AccountID)
		}
		if user.AccountID == account {
			for _, role := range dir.Roles(res.Project, user.ID) {
				if RoleAllows(role, action) {
					return allow(fmt.Sprintf("role:%s@%s", RoleName(role), res.Project))
				}
			}
		}
	}
	if i, ok := matchStatement(dir, policy, dmsv1.PolicyEffect_POLICY_EFFECT_ALLOW, p, user, action); ok {
		return allow(fmt.Sprintf("policy:%s#%d", res, i))
	}
	if !inScope {
		return deny("scope:"+p.ScopeProject, errs.ErrProjectScopeMismatch, "the token is scoped to project %s, not %s, and no policy of the queue shares it", p.ScopeProject, res.Project)
	}
	return deny("default-deny", errs.ErrPermissionDenied, "%s on %s is not allowed: user %s has no role in project %s and no policy of the queue allows it", action, res, user.ID, res.Project)
}

// matchStatement finds the first statement of a policy with an effect that
// names the action and the principal: the user itself, or a project the
// principal is scoped to or (unscoped) has a role in or administers.
func matchStatement(dir Directory, policy *dmsv1.QueuePolicy, effect dmsv1.PolicyEffect, p Principal, user UserInfo, action Action) (int, bool) {
	for i, st := range policy.GetStatements() {
		if st.GetEffect() != effect || !slices.Contains(st.GetActions(), string(action)) {
			continue
		}
		for _, pr := range st.GetPrincipals() {
			kind, id, _ := strings.Cut(pr, "/")
			switch {
			case kind == "users" && id == user.ID:
				return i, true
			case kind == "projects" && p.ScopeProject != "":
				if id == p.ScopeProject {
					return i, true
				}
			case kind == "projects":
				if len(dir.Roles(id, user.ID)) > 0 {
					return i, true
				}
				if account, ok := dir.ProjectAccount(id); ok && user.AccountAdmin && account == user.AccountID {
					return i, true
				}
			}
		}
	}
	return 0, false
}

type principalKey struct{}

// WithPrincipal returns ctx carrying the principal a call acts for.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the principal of a call; a context without one is
// the system's (authentication off, or another role of the cluster).
func FromContext(ctx context.Context) Principal {
	if p, ok := ctx.Value(principalKey{}).(Principal); ok {
		return p
	}
	return SystemPrincipal
}
