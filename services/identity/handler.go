package identity

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	metadatav1 "github.com/opendms/dms/gen/go/dms/cluster/metadata/v1"
	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/authz"
	"github.com/opendms/dms/services/catalog"
	"github.com/opendms/dms/services/errs"
	"github.com/opendms/dms/services/rpcstatus"
)

// Handler serves dms.v1.IdentityService. Each call is authorized here, by
// authz.Decide, because its resource (the account of a user or project) is
// known only from the records.
type Handler struct {
	dmsv1.UnimplementedIdentityServiceServer
	store    *Store
	cache    *Cache
	dataKeys DataKeyDestroyer
}

// DataKeyDestroyer destroys the data keys of a project
// (datakeys.Manager), refusing while the project has queues.
type DataKeyDestroyer interface {
	Destroy(ctx context.Context, project string) ([]*storagev1.WrappedDataKey, error)
}

// NewHandler returns the IdentityService over store; DeleteProject
// destroys the project's data keys through dataKeys (nil: there are none).
func NewHandler(store *Store, dataKeys DataKeyDestroyer) *Handler {
	return &Handler{store: store, cache: store.cache, dataKeys: dataKeys}
}

func (h *Handler) authorize(ctx context.Context, action authz.Action, res authz.Resource) error {
	if d := authz.Decide(h.cache, authz.FromContext(ctx), action, res); !d.Allowed {
		return d.Err
	}
	return nil
}

// caller returns the user a call names, or the caller when it names none.
func (h *Handler) userOrCaller(ctx context.Context, id string) (*metadatav1.UserRecord, error) {
	if id == "" {
		p := authz.FromContext(ctx)
		if p.Kind == authz.Anonymous || p.Kind == authz.Refused {
			return nil, authz.Decide(h.cache, p, authz.ManageCredentials, authz.Resource{}).Err
		}
		if p.Kind != authz.User {
			return nil, errs.Wrapf(errs.ErrIdentityInvalid, "user_id is required when the caller is not a user")
		}
		id = p.UserID
	}
	u, ok := h.cache.user(id)
	if !ok {
		if err := h.authorize(ctx, authz.ManageAccounts, authz.Resource{}); err != nil {
			return nil, err // who may not see other accounts may not learn which users exist
		}
		return nil, errs.Wrapf(errs.ErrIdentityNotFound, "no user has id %q", id)
	}
	return u, nil
}

func (h *Handler) accountOf(ctx context.Context, id string) (*metadatav1.AccountRecord, error) {
	a, ok := h.cache.account(id)
	if !ok {
		if err := h.authorize(ctx, authz.ManageAccounts, authz.Resource{}); err != nil {
			return nil, err
		}
		return nil, errs.Wrapf(errs.ErrIdentityNotFound, "no account has id %q", id)
	}
	return a, nil
}

func ms(t int64) *timestamppb.Timestamp {
	if t == 0 {
		return nil
	}
	return timestamppb.New(timeMs(t))
}

func accountOut(a *metadatav1.AccountRecord) *dmsv1.Account {
	return &dmsv1.Account{Id: a.GetId(), Name: a.GetName(), CreateTime: ms(a.GetCreateTimeMs())}
}

func projectOut(p *metadatav1.ProjectRecord) *dmsv1.Project {
	return &dmsv1.Project{Id: p.GetId(), Name: p.GetName(), AccountId: p.GetAccountId(), CreateTime: ms(p.GetCreateTimeMs())}
}

func userOut(u *metadatav1.UserRecord) *dmsv1.User {
	return &dmsv1.User{Id: u.GetId(), Name: u.GetName(), AccountId: u.GetAccountId(), AccountAdmin: u.GetAccountAdmin(), CreateTime: ms(u.GetCreateTimeMs())}
}

func (h *Handler) bindingOut(b *metadatav1.RoleBindingRecord) *dmsv1.RoleBinding {
	out := &dmsv1.RoleBinding{ProjectId: b.GetProjectId(), UserId: b.GetUserId()}
	if u, ok := h.cache.user(b.GetUserId()); ok {
		out.UserName = u.GetName()
	}
	for _, r := range b.GetRoles() {
		out.Roles = append(out.Roles, dmsv1.Role(r))
	}
	return out
}

func accessKeyOut(k *metadatav1.AccessKeyRecord) *dmsv1.AccessKey {
	return &dmsv1.AccessKey{AccessKey: k.GetAccessKey(), UserId: k.GetUserId(), Description: k.GetDescription(), CreateTime: ms(k.GetCreateTimeMs()), RotateTime: ms(k.GetRotateTimeMs())}
}

func apiTokenOut(t *metadatav1.ApiTokenRecord) *dmsv1.ApiToken {
	return &dmsv1.ApiToken{Id: t.GetId(), UserId: t.GetUserId(), ProjectId: t.GetProjectId(), Description: t.GetDescription(), CreateTime: ms(t.GetCreateTimeMs()), ExpireTime: ms(t.GetExpireTimeMs())}
}

// CreateAccount implements dmsv1.IdentityServiceServer.
func (h *Handler) CreateAccount(ctx context.Context, req *dmsv1.CreateAccountRequest) (*dmsv1.CreateAccountResponse, error) {
	if err := h.authorize(ctx, authz.ManageAccounts, authz.Resource{}); err != nil {
		return nil, rpcstatus.Error(err)
	}
	a, err := h.store.CreateAccount(ctx, req.GetAccount().GetName())
	if err != nil {
		return nil, rpcstatus.Error(err)
	}
	return &dmsv1.CreateAccountResponse{Account: accountOut(a)}, nil
}

// ListAccounts implements dmsv1.IdentityServiceServer: every account for
// the operator's administrators, the caller's own for others.
func (h *Handler) ListAccounts(ctx context.Context, _ *dmsv1.ListAccountsRequest) (*dmsv1.ListAccountsResponse, error) {
	out := &dmsv1.ListAccountsResponse{}
	all := h.authorize(ctx, authz.ManageAccounts, authz.Resource{}) == nil
	p := authz.FromContext(ctx)
	if p.Kind != authz.User && p.Kind != authz.System {
		return nil, rpcstatus.Error(authz.Decide(h.cache, p, authz.ManageAccounts, authz.Resource{}).Err)
	}
	own, _ := h.cache.User(p.UserID)
	for _, a := range h.cache.listAccounts() {
		if all || a.GetId() == own.AccountID {
			out.Accounts = append(out.Accounts, accountOut(a))
		}
	}
	return out, nil
}

// CreateProject implements dmsv1.IdentityServiceServer.
func (h *Handler) CreateProject(ctx context.Context, req *dmsv1.CreateProjectRequest) (*dmsv1.CreateProjectResponse, error) {
	if err := h.authorize(ctx, authz.ManageIdentities, authz.Resource{Account: req.GetAccountId()}); err != nil {
		return nil, rpcstatus.Error(err)
	}
	id := req.GetProject().GetId()
	if id != "" {
		if err := catalog.ValidateProject(id); err != nil {
			return nil, rpcstatus.Error(err)
		}
	}
	p, err := h.store.CreateProject(ctx, req.GetAccountId(), id, req.GetProject().GetName())
	if err != nil {
		return nil, rpcstatus.Error(err)
	}
	return &dmsv1.CreateProjectResponse{Project: projectOut(p)}, nil
}

// ListProjects implements dmsv1.IdentityServiceServer.
func (h *Handler) ListProjects(ctx context.Context, req *dmsv1.ListProjectsRequest) (*dmsv1.ListProjectsResponse, error) {
	if err := h.authorize(ctx, authz.ManageIdentities, authz.Resource{Account: req.GetAccountId()}); err != nil {
		return nil, rpcstatus.Error(err)
	}
	if _, err := h.accountOf(ctx, req.GetAccountId()); err != nil {
		return nil, rpcstatus.Error(err)
	}
	out := &dmsv1.ListProjectsResponse{}
	for _, p := range h.cache.listProjects(req.GetAccountId()) {
		out.Projects = append(out.Projects, projectOut(p))
	}
	return out, nil
}

// DeleteProject implements dmsv1.IdentityServiceServer. The operator's
// administrators and the administrators of the project's account may
// delete it. The data keys go first: if deleting the records fails after
// that, calling again finishes (destroying keys already destroyed does
// nothing), while the other order could leave keys of a project no longer
// listed anywhere.
func (h *Handler) DeleteProject(ctx context.Context, req *dmsv1.DeleteProjectRequest) (*dmsv1.DeleteProjectResponse, error) {
	id := req.GetProjectId()
	account, err := h.projectAccount(ctx, id)
	if err == nil {
		err = h.authorize(ctx, authz.ManageIdentities, authz.Resource{Account: account})
	}
	if err != nil {
		return nil, rpcstatus.Error(err)
	}
	n, _, err := h.store.QueueCount(ctx, id)
	if err == nil && n > 0 {
		err = errs.Wrapf(errs.ErrProjectNotEmpty, "project %s still has %d queue(s); delete them before deleting the project", id, n)
	}
	if err != nil {
		return nil, rpcstatus.Error(err)
	}
	out := &dmsv1.DeleteProjectResponse{}
	if h.dataKeys != nil {
		destroyed, err := h.dataKeys.Destroy(ctx, id)
		if errors.Is(err, errs.ErrDataKeysInUse) { // a queue was created meanwhile
			err = errs.Wrapf(errs.ErrProjectNotEmpty, "project %s has a queue again; delete it before deleting the project", id)
		}
		if err != nil {
			return nil, rpcstatus.Error(err)
		}
		out.DestroyedDataKeys = int32(len(destroyed))
	}
	if err := h.store.DeleteProject(ctx, id); err != nil {
		return nil, rpcstatus.Error(err)
	}
	return out, nil
}

// CreateUser implements dmsv1.IdentityServiceServer.
func (h *Handler) CreateUser(ctx context.Context, req *dmsv1.CreateUserRequest) (*dmsv1.CreateUserResponse, error) {
	if err := h.authorize(ctx, authz.ManageIdentities, authz.Resource{Account: req.GetAccountId()}); err != nil {
		return nil, rpcstatus.Error(err)
	}
	u, err := h.store.CreateUser(ctx, req.GetAccountId(), req.GetUser().GetName(), req.GetPassword(), req.GetUser().GetAccountAdmin())
	if err != nil {
		return nil, rpcstatus.Error(err)
	}
	return &dmsv1.CreateUserResponse{User: userOut(u)}, nil
}

// ListUsers implements dmsv1.IdentityServiceServer.
func (h *Handler) ListUsers(ctx context.Context, req *dmsv1.ListUsersRequest) (*dmsv1.ListUsersResponse, error) {
	if err := h.authorize(ctx, authz.ManageIdentities, authz.Resource{Account: req.GetAccountId()}); err != nil {
		return nil, rpcstatus.Error(err)
	}
	if _, err := h.accountOf(ctx, req.GetAccountId()); err != nil {
		return nil, rpcstatus.Error(err)
	}
	out := &dmsv1.ListUsersResponse{}
	for _, u := range h.cache.listUsers(req.GetAccountId()) {
		out.Users = append(out.Users, userOut(u))
	}
	return out, nil
}

// SetUserPassword implements dmsv1.IdentityServiceServer. A user may set
// their own password.
func (h *Handler) SetUserPassword(ctx context.Context, req *dmsv1.SetUserPasswordRequest) (*dmsv1.SetUserPasswordResponse, error) {
	u, err := h.userOrCaller(ctx, req.GetUserId())
	if err == nil {
		err = h.authorize(ctx, authz.ManageCredentials, authz.Resource{Account: u.GetAccountId(), User: u.GetId()})
	}
	if err == nil {
		err = h.store.SetPassword(ctx, u.GetId(), req.GetPassword())
	}
	if err != nil {
		return nil, rpcstatus.Error(err)
	}
	return &dmsv1.SetUserPasswordResponse{}, nil
}

// DeleteUser implements dmsv1.IdentityServiceServer.
func (h *Handler) DeleteUser(ctx context.Context, req *dmsv1.DeleteUserRequest) (*dmsv1.DeleteUserResponse, error) {
	u, err := h.userOrCaller(ctx, req.GetUserId())
	if err == nil {
		err = h.authorize(ctx, authz.ManageIdentities, authz.Resource{Account: u.GetAccountId()})
	}
	if err == nil {
		err = h.store.DeleteUser(ctx, u.GetId())
	}
	if err != nil {
		return nil, rpcstatus.Error(err)
	}
	return &dmsv1.DeleteUserResponse{}, nil
}

func (h *Handler) projectAccount(ctx context.Context, projectID string) (string, error) {
	p, ok := h.cache.project(projectID)
	if !ok {
		if err := h.authorize(ctx, authz.ManageAccounts, authz.Resource{}); err != nil {
			return "", err
		}
		return "", errs.Wrapf(errs.ErrIdentityNotFound, "no project has id %q", projectID)
	}
	return p.GetAccountId(), nil
}

func (h *Handler) changeRole(ctx context.Context, projectID, userID string, role dmsv1.Role, grant bool) (*dmsv1.RoleBinding, error) {
	account, err := h.projectAccount(ctx, projectID)
	if err != nil {
		return nil, rpcstatus.Error(err)
	}
	if err := h.authorize(ctx, authz.ManageIdentities, authz.Resource{Account: account}); err != nil {
		return nil, rpcstatus.Error(err)
	}
	change := h.store.RevokeRole
	if grant {
		change = h.store.GrantRole
	}
	b, err := change(ctx, projectID, userID, role)
	if err != nil {
		return nil, rpcstatus.Error(err)
	}
	return h.bindingOut(b), nil
}

// GrantRole implements dmsv1.IdentityServiceServer.
func (h *Handler) GrantRole(ctx context.Context, req *dmsv1.GrantRoleRequest) (*dmsv1.GrantRoleResponse, error) {
	b, err := h.changeRole(ctx, req.GetProjectId(), req.GetUserId(), req.GetRole(), true)
	if err != nil {
		return nil, err
	}
	return &dmsv1.GrantRoleResponse{Binding: b}, nil
}

// RevokeRole implements dmsv1.IdentityServiceServer.
func (h *Handler) RevokeRole(ctx context.Context, req *dmsv1.RevokeRoleRequest) (*dmsv1.RevokeRoleResponse, error) {
	b, err := h.changeRole(ctx, req.GetProjectId(), req.GetUserId(), req.GetRole(), false)
	if err != nil {
		return nil, err
	}
	return &dmsv1.RevokeRoleResponse{Binding: b}, nil
}

// ListRoleBindings implements dmsv1.IdentityServiceServer.
func (h *Handler) ListRoleBindings(ctx context.Context, req *dmsv1.ListRoleBindingsRequest) (*dmsv1.ListRoleBindingsResponse, error) {
	account, err := h.projectAccount(ctx, req.GetProjectId())
	if err == nil {
		err = h.authorize(ctx, authz.ManageIdentities, authz.Resource{Account: account})
	}
	if err != nil {
		return nil, rpcstatus.Error(err)
	}
	out := &dmsv1.ListRoleBindingsResponse{}
	for _, b := range h.cache.listBindings(req.GetProjectId()) {
		out.Bindings = append(out.Bindings, h.bindingOut(b))
	}
	return out, nil
}

// credentialsOf authorizes managing the credentials of a user (the caller
// when id is empty).
func (h *Handler) credentialsOf(ctx context.Context, id string) (*metadatav1.UserRecord, error) {
	u, err := h.userOrCaller(ctx, id)
	if err != nil {
		return nil, err
	}
	return u, h.authorize(ctx, authz.ManageCredentials, authz.Resource{Account: u.GetAccountId(), User: u.GetId()})
}

// CreateAccessKey implements dmsv1.IdentityServiceServer.
func (h *Handler) CreateAccessKey(ctx context.Context, req *dmsv1.CreateAccessKeyRequest) (*dmsv1.CreateAccessKeyResponse, error) {
	u, err := h.credentialsOf(ctx, req.GetUserId())
	if err != nil {
		return nil, rpcstatus.Error(err)
	}
	k, sk, err := h.store.CreateAccessKey(ctx, u.GetId(), req.GetDescription())
	if err != nil {
		return nil, rpcstatus.Error(err)
	}
	return &dmsv1.CreateAccessKeyResponse{AccessKey: accessKeyOut(k), SecretKey: sk}, nil
}

// ListAccessKeys implements dmsv1.IdentityServiceServer.
func (h *Handler) ListAccessKeys(ctx context.Context, req *dmsv1.ListAccessKeysRequest) (*dmsv1.ListAccessKeysResponse, error) {
	u, err := h.credentialsOf(ctx, req.GetUserId())
	if err != nil {
		return nil, rpcstatus.Error(err)
	}
	keys, _ := h.cache.userKeys(u.GetId())
	out := &dmsv1.ListAccessKeysResponse{}
	for _, k := range keys {
		out.AccessKeys = append(out.AccessKeys, accessKeyOut(k))
	}
	return out, nil
}

func (h *Handler) accessKeyOwner(ctx context.Context, ak string) error {
	k, ok := h.cache.accessKey(ak)
	if !ok {
		return errs.Wrapf(errs.ErrIdentityNotFound, "no access key %q", ak)
	}
	_, err := h.credentialsOf(ctx, k.GetUserId())
	return err
}

// RotateAccessKey implements dmsv1.IdentityServiceServer.
func (h *Handler) RotateAccessKey(ctx context.Context, req *dmsv1.RotateAccessKeyRequest) (*dmsv1.RotateAccessKeyResponse, error) {
	if err := h.accessKeyOwner(ctx, req.GetAccessKey()); err != nil {
		return nil, rpcstatus.Error(err)
	}
	k, sk, err := h.store.RotateAccessKey(ctx, req.GetAccessKey())
	if err != nil {
		return nil, rpcstatus.Error(err)
	}
	return &dmsv1.RotateAccessKeyResponse{AccessKey: accessKeyOut(k), SecretKey: sk}, nil
}

// DeleteAccessKey implements dmsv1.IdentityServiceServer.
func (h *Handler) DeleteAccessKey(ctx context.Context, req *dmsv1.DeleteAccessKeyRequest) (*dmsv1.DeleteAccessKeyResponse, error) {
	err := h.accessKeyOwner(ctx, req.GetAccessKey())
	if err == nil {
		err = h.store.DeleteAccessKey(ctx, req.GetAccessKey())
	}
	if err != nil {
		return nil, rpcstatus.Error(err)
	}
	return &dmsv1.DeleteAccessKeyResponse{}, nil
}

// CreateApiToken implements dmsv1.IdentityServiceServer.
func (h *Handler) CreateApiToken(ctx context.Context, req *dmsv1.CreateApiTokenRequest) (*dmsv1.CreateApiTokenResponse, error) {
	u, err := h.credentialsOf(ctx, req.GetUserId())
	if err != nil {
		return nil, rpcstatus.Error(err)
	}
	var expire time.Time
	if req.GetExpireTime() != nil {
		expire = req.GetExpireTime().AsTime()
	}
	t, token, err := h.store.CreateApiToken(ctx, u.GetId(), req.GetProjectId(), req.GetDescription(), expire)
	if err != nil {
		return nil, rpcstatus.Error(err)
	}
	return &dmsv1.CreateApiTokenResponse{ApiToken: apiTokenOut(t), Token: token}, nil
}

// ListApiTokens implements dmsv1.IdentityServiceServer.
func (h *Handler) ListApiTokens(ctx context.Context, req *dmsv1.ListApiTokensRequest) (*dmsv1.ListApiTokensResponse, error) {
	u, err := h.credentialsOf(ctx, req.GetUserId())
	if err != nil {
		return nil, rpcstatus.Error(err)
	}
	_, tokens := h.cache.userKeys(u.GetId())
	out := &dmsv1.ListApiTokensResponse{}
	for _, t := range tokens {
		out.ApiTokens = append(out.ApiTokens, apiTokenOut(t))
	}
	return out, nil
}

// RotateApiToken implements dmsv1.IdentityServiceServer.
func (h *Handler) RotateApiToken(ctx context.Context, req *dmsv1.RotateApiTokenRequest) (*dmsv1.RotateApiTokenResponse, error) {
	t, ok := h.cache.apiToken(req.GetId())
	var err error
	if !ok {
		err = errs.Wrapf(errs.ErrIdentityNotFound, "no API token %q", req.GetId())
	}
	if err == nil {
		_, err = h.credentialsOf(ctx, t.GetUserId())
	}
	var token string
	if err == nil {
		t, token, err = h.store.RotateApiToken(ctx, req.GetId())
	}
	if err != nil {
		return nil, rpcstatus.Error(err)
	}
	return &dmsv1.RotateApiTokenResponse{ApiToken: apiTokenOut(t), Token: token}, nil
}

// RevokeApiToken implements dmsv1.IdentityServiceServer.
func (h *Handler) RevokeApiToken(ctx context.Context, req *dmsv1.RevokeApiTokenRequest) (*dmsv1.RevokeApiTokenResponse, error) {
	t, ok := h.cache.apiToken(req.GetId())
	var err error
	if !ok {
		err = errs.Wrapf(errs.ErrIdentityNotFound, "no API token %q", req.GetId())
	}
	if err == nil {
		_, err = h.credentialsOf(ctx, t.GetUserId())
	}
	if err == nil {
		err = h.store.RevokeApiToken(ctx, req.GetId())
	}
	if err != nil {
		return nil, rpcstatus.Error(err)
	}
	return &dmsv1.RevokeApiTokenResponse{}, nil
}

// queueForPolicy authorizes managing a queue's policy and returns the
// queue's project and id.
func (h *Handler) queueForPolicy(ctx context.Context, name string) (string, string, error) {
	res, err := ParseResource(name)
	if err != nil || res.Queue == "" {
		return "", "", errs.Wrapf(errs.ErrResourceNameInvalid, "%q is not a queue name of the form projects/{project}/queues/{queue}", name)
	}
	if err := h.authorize(ctx, authz.ManageQueuePolicy, res); err != nil {
		return "", "", err
	}
	id, ok := h.cache.queueID(res.Project, res.Queue)
	if !ok {
		return "", "", errs.Wrapf(errs.ErrQueueNotFound, "project %s has no queue %q", res.Project, res.Queue)
	}
	return res.Project, id, nil
}

// SetQueuePolicy implements dmsv1.IdentityServiceServer.
func (h *Handler) SetQueuePolicy(ctx context.Context, req *dmsv1.SetQueuePolicyRequest) (*dmsv1.SetQueuePolicyResponse, error) {
	project, id, err := h.queueForPolicy(ctx, req.GetQueue())
	if err == nil {
		err = h.store.SetQueuePolicy(ctx, project, id, req.GetPolicy())
	}
	if err != nil {
		return nil, rpcstatus.Error(err)
	}
	return &dmsv1.SetQueuePolicyResponse{Policy: h.policyOut(id)}, nil
}

// GetQueuePolicy implements dmsv1.IdentityServiceServer.
func (h *Handler) GetQueuePolicy(ctx context.Context, req *dmsv1.GetQueuePolicyRequest) (*dmsv1.GetQueuePolicyResponse, error) {
	_, id, err := h.queueForPolicy(ctx, req.GetQueue())
	if err != nil {
		return nil, rpcstatus.Error(err)
	}
	return &dmsv1.GetQueuePolicyResponse{Policy: h.policyOut(id)}, nil
}

func (h *Handler) policyOut(queueID string) *dmsv1.QueuePolicy {
	if p := h.cache.queuePolicy(queueID); p != nil {
		return p
	}
	return &dmsv1.QueuePolicy{}
}

// ExplainAccess implements dmsv1.IdentityServiceServer. Asking about
// oneself needs nothing; asking about another user needs the right to
// manage that user's account.
func (h *Handler) ExplainAccess(ctx context.Context, req *dmsv1.ExplainAccessRequest) (*dmsv1.ExplainAccessResponse, error) {
	action := authz.Action(req.GetAction())
	if !slices.Contains(authz.QueueActions, action) {
		return nil, rpcstatus.Error(errs.Wrapf(errs.ErrIdentityInvalid, "action %q is not one of %v", action, authz.QueueActions))
	}
	res, err := ParseResource(req.GetResource())
	if err != nil {
		return nil, rpcstatus.Error(err)
	}
	u, err := h.userOrCaller(ctx, req.GetUserId())
	if err != nil {
		return nil, rpcstatus.Error(err)
	}
	caller := authz.FromContext(ctx)
	if caller.Kind != authz.User || caller.UserID != u.GetId() {
		if err := h.authorize(ctx, authz.ManageIdentities, authz.Resource{Account: u.GetAccountId()}); err != nil {
			return nil, rpcstatus.Error(err)
		}
	}
	d := authz.Decide(h.cache, authz.Principal{Kind: authz.User, UserID: u.GetId(), ScopeProject: req.GetScopeProjectId()}, action, res)
	out := &dmsv1.ExplainAccessResponse{Allowed: d.Allowed, DecidedBy: d.DecidedBy}
	if d.Err != nil {
		out.Reason, out.Message = errs.Of(d.Err).Reason, d.Err.Error()
	} else {
		out.Message = "allowed by " + d.DecidedBy
	}
	return out, nil
}

func timeMs(t int64) time.Time { return time.UnixMilli(t) }

// ParseResource reads `projects/{project}` or
// `projects/{project}/queues/{queue}`.
func ParseResource(name string) (authz.Resource, error) {
	if project, err := catalog.ParseProject(name); err == nil {
		return authz.Resource{Project: project}, nil
	}
	if q, err := catalog.ParseQueueName(name); err == nil {
		return authz.Resource{Project: q.Project, Queue: q.Queue}, nil
	}
	return authz.Resource{}, errs.Wrapf(errs.ErrIdentityInvalid, "resource %q is not projects/{project} or projects/{project}/queues/{queue}", strings.TrimSpace(name))
}
