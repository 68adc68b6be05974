package identity

import (
	"context"
	"crypto/sha256"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	metadatav1 "github.com/opendms/dms/gen/go/dms/cluster/metadata/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/catalog"
	"github.com/opendms/dms/services/errs"
)

// Store changes the identity records in etcd with transactions that keep
// names unique, and reads them back from its cache.
type Store struct {
	cli    *clientv3.Client
	cache  *Cache
	sealer *Sealer
	now    func() time.Time
}

// NewStore returns a store writing through cli and reading cache.
func NewStore(cli *clientv3.Client, cache *Cache, sealer *Sealer, now func() time.Time) *Store {
	return &Store{cli: cli, cache: cache, sealer: sealer, now: now}
}

// Cache returns the cache the store reads.
func (s *Store) Cache() *Cache { return s.cache }

var (
	namePattern      = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)
	projectIDPattern = regexp.MustCompile(`^[0-9a-f]{32}$`)
)

func checkName(what, name string) error {
	if !namePattern.MatchString(name) {
		return errs.Wrapf(errs.ErrIdentityInvalid, "%s name %q must be 1 to 64 characters of letters, digits, '_', '-' and '.'", what, name)
	}
	return nil
}

// CheckProjectID reports whether id is a project id (32 lowercase hex).
func CheckProjectID(id string) error {
	if !projectIDPattern.MatchString(id) {
		return errs.Wrapf(errs.ErrIdentityInvalid, "project id %q must be 32 lowercase hex digits", id)
	}
	return nil
}

func (s *Store) commit(ctx context.Context, txn clientv3.Txn) (bool, error) {
	resp, err := txn.Commit()
	if err != nil {
		return false, errs.Wrapf(errs.ErrUnavailable, "identity: writing etcd: %v", err)
	}
	// Wait for the cache to show the write — but only for a write: a
	// transaction that changed nothing (its condition failed, or it deleted
	// a key that was not there) answers with etcd's current revision, which
	// the cache, watching only identity keys, may never be told about.
	if wrote(resp.Responses) {
		if err := s.cache.WaitForRevision(ctx, resp.Header.Revision); err != nil {
			return false, err
		}
	}
	return resp.Succeeded, nil
}

// wrote reports whether the operations a transaction ran changed a key.
func wrote(responses []*etcdserverpb.ResponseOp) bool {
	for _, r := range responses {
		switch {
		case r.GetResponsePut() != nil:
			return true
		case r.GetResponseDeleteRange() != nil && r.GetResponseDeleteRange().GetDeleted() > 0:
			return true
		case r.GetResponseTxn() != nil && wrote(r.GetResponseTxn().GetResponses()):
			return true
		}
	}
	return false
}

func marshal(m proto.Message) string {
	b, _ := proto.Marshal(m)
	return string(b)
}

func absent(key string) clientv3.Cmp { return clientv3.Compare(clientv3.CreateRevision(key), "=", 0) }
func present(key string) clientv3.Cmp {
	return clientv3.Compare(clientv3.CreateRevision(key), ">", 0)
}

// CreateAccount creates an account named name.
func (s *Store) CreateAccount(ctx context.Context, name string) (*metadatav1.AccountRecord, error) {
	if err := checkName("account", name); err != nil {
		return nil, err
	}
	rec := &metadatav1.AccountRecord{Id: newHexID(), Name: name, CreateTimeMs: s.now().UnixMilli()}
	ok, err := s.commit(ctx, s.cli.Txn(ctx).If(absent(accountNameKey(name))).
		Then(clientv3.OpPut(accountNameKey(name), rec.Id), clientv3.OpPut(accountKey(rec.Id), marshal(rec))))
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errs.Wrapf(errs.ErrIdentityAlreadyExists, "an account named %q exists", name)
	}
	return rec, nil
}

// SetOperatorAccount makes an account the operator's unless one is already.
func (s *Store) SetOperatorAccount(ctx context.Context, accountID string) error {
	_, err := s.commit(ctx, s.cli.Txn(ctx).If(absent(operatorKey)).Then(clientv3.OpPut(operatorKey, accountID)))
	return err
}

// CreateProject creates a project in an account; an empty id makes one.
func (s *Store) CreateProject(ctx context.Context, accountID, id, name string) (*metadatav1.ProjectRecord, error) {
	if err := checkName("project", name); err != nil {
		return nil, err
	}
	if id == "" {
		id = newHexID()
	}
	if err := CheckProjectID(id); err != nil {
		return nil, err
	}
	rec := &metadatav1.ProjectRecord{Id: id, Name: name, AccountId: accountID, CreateTimeMs: s.now().UnixMilli()}
	ok, err := s.commit(ctx, s.cli.Txn(ctx).If(present(accountKey(accountID)), absent(projectKey(id)), absent(projectNameKey(accountID, name))).
		Then(clientv3.OpPut(projectKey(id), marshal(rec)), clientv3.OpPut(projectNameKey(accountID, name), id)))
	if err != nil {
		return nil, err
	}
	if !ok {
		if _, found := s.cache.account(accountID); !found {
			return nil, errs.Wrapf(errs.ErrIdentityNotFound, "no account has id %q", accountID)
		}
		return nil, errs.Wrapf(errs.ErrIdentityAlreadyExists, "project id %s or name %q is taken", id, name)
	}
	return rec, nil
}

// DeleteProject deletes a project's record with its role bindings, the API
// tokens scoped to it, the policies left of its queues and its quotas. It fails with
// ErrProjectNotEmpty while the catalog counts queues in the project; the
// check and the deletion are one transaction.
func (s *Store) DeleteProject(ctx context.Context, projectID string) error {
	for range 10 {
		p, ok := s.cache.project(projectID)
		if !ok {
			return errs.Wrapf(errs.ErrIdentityNotFound, "no project has id %q", projectID)
		}
		n, countRev, err := s.QueueCount(ctx, projectID)
		if err != nil {
			return err
		}
		if n > 0 {
			return errs.Wrapf(errs.ErrProjectNotEmpty, "project %s still has %d queue(s); delete them before deleting the project", projectID, n)
		}
		// Its own quotas go too: a project made again with the same id
		// starts from the server's defaults.
		ops := []clientv3.Op{clientv3.OpDelete(projectKey(projectID)), clientv3.OpDelete(projectNameKey(p.GetAccountId(), p.GetName())), clientv3.OpDelete(catalog.QuotaKey(projectID))}
		for _, b := range s.cache.listBindings(projectID) {
			ops = append(ops, clientv3.OpDelete(bindingKey(projectID, b.GetUserId())))
		}
		tokens, policies := s.cache.projectTokensAndPolicies(projectID)
		for _, id := range tokens {
			ops = append(ops, clientv3.OpDelete(apiTokenKey(id)))
		}
		for _, id := range policies {
			ops = append(ops, clientv3.OpDelete(policyKey(id)))
		}
		ok, err = s.commit(ctx, s.cli.Txn(ctx).If(present(projectKey(projectID)), clientv3.Compare(clientv3.ModRevision(catalog.QueueCountKey(projectID)), "=", countRev)).Then(ops...))
		if err != nil || ok {
			return err
		}
	}
	return errs.Wrapf(errs.ErrUnavailable, "project %s kept changing during its deletion; retry", projectID)
}

// QueueCount returns the number of queues the catalog counts in a project
// and the revision of the count (0 when there is none).
func (s *Store) QueueCount(ctx context.Context, projectID string) (int, int64, error) {
	resp, err := s.cli.Get(ctx, catalog.QueueCountKey(projectID))
	if err != nil {
		return 0, 0, errs.Wrapf(errs.ErrUnavailable, "identity: reading etcd: %v", err)
	}
	if len(resp.Kvs) == 0 {
		return 0, 0, nil
	}
	n, _ := strconv.Atoi(string(resp.Kvs[0].Value))
	return n, resp.Kvs[0].ModRevision, nil
}

// CreateUser creates a user in an account.
func (s *Store) CreateUser(ctx context.Context, accountID, name, password string, admin bool) (*metadatav1.UserRecord, error) {
	if err := checkName("user", name); err != nil {
		return nil, err
	}
	if err := checkPassword(password); err != nil {
		return nil, err
	}
	hash, err := hashPassword(password)
	if err != nil {
		return nil, err
	}
	scram, err := scramCredentials(password)
	if err != nil {
		return nil, err
	}
	rec := &metadatav1.UserRecord{Id: newHexID(), Name: name, AccountId: accountID, PasswordHash: hash, AccountAdmin: admin, CreateTimeMs: s.now().UnixMilli(),
		ScramCredentials: scram}
	ok, err := s.commit(ctx, s.cli.Txn(ctx).If(present(accountKey(accountID)), absent(userNameKey(accountID, name))).
		Then(clientv3.OpPut(userKey(rec.Id), marshal(rec)), clientv3.OpPut(userNameKey(accountID, name), rec.Id)))
	if err != nil {
		return nil, err
	}
	if !ok {
		if _, found := s.cache.account(accountID); !found {
			return nil, errs.Wrapf(errs.ErrIdentityNotFound, "no account has id %q", accountID)
		}
		return nil, errs.Wrapf(errs.ErrIdentityAlreadyExists, "account %s has a user named %q", accountID, name)
	}
	return rec, nil
}

// updateUser rewrites a user record if it did not change meanwhile.
func (s *Store) updateUser(ctx context.Context, id string, change func(*metadatav1.UserRecord) error) error {
	for {
		resp, err := s.cli.Get(ctx, userKey(id))
		if err != nil {
			return errs.Wrapf(errs.ErrUnavailable, "identity: reading etcd: %v", err)
		}
		if len(resp.Kvs) == 0 {
			return errs.Wrapf(errs.ErrIdentityNotFound, "no user has id %q", id)
		}
		rec := &metadatav1.UserRecord{}
		if err := proto.Unmarshal(resp.Kvs[0].Value, rec); err != nil {
			return err
		}
		if err := change(rec); err != nil {
			return err
		}
		ok, err := s.commit(ctx, s.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(userKey(id)), "=", resp.Kvs[0].ModRevision)).
			Then(clientv3.OpPut(userKey(id), marshal(rec))))
		if err != nil || ok {
			return err
		}
	}
}

// SetPassword replaces a user's password.
func (s *Store) SetPassword(ctx context.Context, userID, password string) error {
	if err := checkPassword(password); err != nil {
		return err
	}
	hash, err := hashPassword(password)
	if err != nil {
		return err
	}
	scram, err := scramCredentials(password)
	if err != nil {
		return err
	}
	return s.updateUser(ctx, userID, func(u *metadatav1.UserRecord) error {
		u.PasswordHash, u.ScramCredentials = hash, scram
		return nil
	})
}

// DeleteUser deletes a user with their bindings, access keys and tokens.
func (s *Store) DeleteUser(ctx context.Context, userID string) error {
	u, ok := s.cache.user(userID)
	if !ok {
		return errs.Wrapf(errs.ErrIdentityNotFound, "no user has id %q", userID)
	}
	ops := []clientv3.Op{clientv3.OpDelete(userKey(userID)), clientv3.OpDelete(userNameKey(u.GetAccountId(), u.GetName()))}
	for _, project := range s.cache.userBindings(userID) {
		ops = append(ops, clientv3.OpDelete(bindingKey(project, userID)))
	}
	keys, tokens := s.cache.userKeys(userID)
	for _, k := range keys {
		ops = append(ops, clientv3.OpDelete(accessKeyKey(k.GetAccessKey())))
	}
	for _, t := range tokens {
		ops = append(ops, clientv3.OpDelete(apiTokenKey(t.GetId())))
	}
	_, err := s.commit(ctx, s.cli.Txn(ctx).Then(ops...))
	return err
}

// changeRoles adds or removes a role of a user in a project.
func (s *Store) changeRoles(ctx context.Context, projectID, userID string, role dmsv1.Role, grant bool) (*metadatav1.RoleBindingRecord, error) {
	if _, ok := dmsv1.Role_name[int32(role)]; !ok || role == dmsv1.Role_ROLE_UNSPECIFIED {
		return nil, errs.Wrapf(errs.ErrIdentityInvalid, "role %d is not one of ROLE_ADMIN, ROLE_PRODUCER, ROLE_CONSUMER, ROLE_VIEWER", role)
	}
	p, ok := s.cache.project(projectID)
	if !ok {
		return nil, errs.Wrapf(errs.ErrIdentityNotFound, "no project has id %q", projectID)
	}
	u, ok := s.cache.user(userID)
	if !ok {
		return nil, errs.Wrapf(errs.ErrIdentityNotFound, "no user has id %q", userID)
	}
	if u.GetAccountId() != p.GetAccountId() {
		return nil, errs.Wrapf(errs.ErrIdentityInvalid, "user %s belongs to account %s, project %s to account %s; roles are given within an account", userID, u.GetAccountId(), projectID, p.GetAccountId())
	}
	key := bindingKey(projectID, userID)
	for {
		resp, err := s.cli.Get(ctx, key)
		if err != nil {
			return nil, errs.Wrapf(errs.ErrUnavailable, "identity: reading etcd: %v", err)
		}
		rec := &metadatav1.RoleBindingRecord{ProjectId: projectID, UserId: userID}
		var rev int64
		if len(resp.Kvs) > 0 {
			rev = resp.Kvs[0].ModRevision
			if err := proto.Unmarshal(resp.Kvs[0].Value, rec); err != nil {
				return nil, err
			}
		}
		has := slices.Contains(rec.Roles, int32(role))
		switch {
		case grant && !has:
			rec.Roles = append(rec.Roles, int32(role))
			slices.Sort(rec.Roles)
		case !grant && has:
			rec.Roles = slices.DeleteFunc(rec.Roles, func(r int32) bool { return r == int32(role) })
		}
		op := clientv3.OpPut(key, marshal(rec))
		if len(rec.Roles) == 0 {
			op = clientv3.OpDelete(key)
		}
		// The user must still exist, or a role would outlive a deletion.
		// Nor a deleted project's.
		ok, err := s.commit(ctx, s.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", rev), present(userKey(userID)), present(projectKey(projectID))).Then(op))
		if err != nil {
			return nil, err
		}
		if ok {
			return rec, nil
		}
		if _, found := s.cache.user(userID); !found {
			return nil, errs.Wrapf(errs.ErrIdentityNotFound, "no user has id %q", userID)
		}
		if _, found := s.cache.project(projectID); !found {
			return nil, errs.Wrapf(errs.ErrIdentityNotFound, "no project has id %q", projectID)
		}
	}
}

// GrantRole gives a user a role in a project.
func (s *Store) GrantRole(ctx context.Context, projectID, userID string, role dmsv1.Role) (*metadatav1.RoleBindingRecord, error) {
	return s.changeRoles(ctx, projectID, userID, role, true)
}

// RevokeRole takes a role in a project from a user.
func (s *Store) RevokeRole(ctx context.Context, projectID, userID string, role dmsv1.Role) (*metadatav1.RoleBindingRecord, error) {
	return s.changeRoles(ctx, projectID, userID, role, false)
}

const maxDescription = 255

// CreateAccessKey makes an AK/SK pair for a user and returns the SK once.
func (s *Store) CreateAccessKey(ctx context.Context, userID, description string) (*metadatav1.AccessKeyRecord, string, error) {
	if len(description) > maxDescription {
		return nil, "", errs.Wrapf(errs.ErrIdentityInvalid, "a description has at most %d bytes", maxDescription)
	}
	ak, sk := newAccessKeyID(), newSecret(30)
	sealed, keyID, err := s.sealer.seal(ak, sk)
	if err != nil {
		return nil, "", err
	}
	now := s.now().UnixMilli()
	rec := &metadatav1.AccessKeyRecord{AccessKey: ak, UserId: userID, Secret: sealed, SealingKeyId: keyID, Description: description, CreateTimeMs: now, RotateTimeMs: now}
	ok, err := s.commit(ctx, s.cli.Txn(ctx).If(present(userKey(userID)), absent(accessKeyKey(ak))).Then(clientv3.OpPut(accessKeyKey(ak), marshal(rec))))
	if err != nil {
		return nil, "", err
	}
	if !ok {
		return nil, "", errs.Wrapf(errs.ErrIdentityNotFound, "no user has id %q", userID)
	}
	return rec, sk, nil
}

// RotateAccessKey gives an access key a new secret and returns it once.
func (s *Store) RotateAccessKey(ctx context.Context, ak string) (*metadatav1.AccessKeyRecord, string, error) {
	resp, err := s.cli.Get(ctx, accessKeyKey(ak))
	if err != nil {
		return nil, "", errs.Wrapf(errs.ErrUnavailable, "identity: reading etcd: %v", err)
	}
	if len(resp.Kvs) == 0 {
		return nil, "", errs.Wrapf(errs.ErrIdentityNotFound, "no access key %q", ak)
	}
	rec := &metadatav1.AccessKeyRecord{}
	if err := proto.Unmarshal(resp.Kvs[0].Value, rec); err != nil {
		return nil, "", err
	}
	sk := newSecret(30)
	if rec.Secret, rec.SealingKeyId, err = s.sealer.seal(ak, sk); err != nil {
		return nil, "", err
	}
	rec.RotateTimeMs = s.now().UnixMilli()
	ok, err := s.commit(ctx, s.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(accessKeyKey(ak)), "=", resp.Kvs[0].ModRevision)).
		Then(clientv3.OpPut(accessKeyKey(ak), marshal(rec))))
	if err != nil {
		return nil, "", err
	}
	if !ok {
		return nil, "", errs.Wrapf(errs.ErrUnavailable, "access key %s changed during the rotation; retry", ak)
	}
	return rec, sk, nil
}

// DeleteAccessKey revokes an access key.
func (s *Store) DeleteAccessKey(ctx context.Context, ak string) error {
	ok, err := s.commit(ctx, s.cli.Txn(ctx).If(present(accessKeyKey(ak))).Then(clientv3.OpDelete(accessKeyKey(ak))))
	if err == nil && !ok {
		err = errs.Wrapf(errs.ErrIdentityNotFound, "no access key %q", ak)
	}
	return err
}

// apiTokenPrefixText starts every API token: `dmsk.{id}.{secret}`.
const apiTokenPrefixText = "dmsk."

// CreateApiToken makes an API token for a user and returns it once.
func (s *Store) CreateApiToken(ctx context.Context, userID, projectID, description string, expire time.Time) (*metadatav1.ApiTokenRecord, string, error) {
	if len(description) > maxDescription {
		return nil, "", errs.Wrapf(errs.ErrIdentityInvalid, "a description has at most %d bytes", maxDescription)
	}
	if projectID != "" {
		if _, ok := s.cache.project(projectID); !ok {
			return nil, "", errs.Wrapf(errs.ErrIdentityNotFound, "no project has id %q", projectID)
		}
	}
	id, secret := newHexID()[:16], newSecret(32)
	sum := sha256.Sum256([]byte(secret))
	rec := &metadatav1.ApiTokenRecord{Id: id, UserId: userID, ProjectId: projectID, SecretSha256: sum[:], Description: description, CreateTimeMs: s.now().UnixMilli()}
	if !expire.IsZero() {
		rec.ExpireTimeMs = expire.UnixMilli()
	}
	conds := []clientv3.Cmp{present(userKey(userID)), absent(apiTokenKey(id))}
	if projectID != "" {
		conds = append(conds, present(projectKey(projectID))) // not scoped to a project deleted meanwhile
	}
	ok, err := s.commit(ctx, s.cli.Txn(ctx).If(conds...).Then(clientv3.OpPut(apiTokenKey(id), marshal(rec))))
	if err != nil {
		return nil, "", err
	}
	if !ok {
		return nil, "", errs.Wrapf(errs.ErrIdentityNotFound, "no user has id %q or no project has id %q", userID, projectID)
	}
	return rec, apiTokenPrefixText + id + "." + secret, nil
}

// RotateApiToken gives an API token a new secret and returns the token once.
func (s *Store) RotateApiToken(ctx context.Context, id string) (*metadatav1.ApiTokenRecord, string, error) {
	resp, err := s.cli.Get(ctx, apiTokenKey(id))
	if err != nil {
		return nil, "", errs.Wrapf(errs.ErrUnavailable, "identity: reading etcd: %v", err)
	}
	if len(resp.Kvs) == 0 {
		return nil, "", errs.Wrapf(errs.ErrIdentityNotFound, "no API token %q", id)
	}
	rec := &metadatav1.ApiTokenRecord{}
	if err := proto.Unmarshal(resp.Kvs[0].Value, rec); err != nil {
		return nil, "", err
	}
	secret := newSecret(32)
	sum := sha256.Sum256([]byte(secret))
	rec.SecretSha256 = sum[:]
	ok, err := s.commit(ctx, s.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(apiTokenKey(id)), "=", resp.Kvs[0].ModRevision)).
		Then(clientv3.OpPut(apiTokenKey(id), marshal(rec))))
	if err != nil {
		return nil, "", err
	}
	if !ok {
		return nil, "", errs.Wrapf(errs.ErrUnavailable, "API token %s changed during the rotation; retry", id)
	}
	return rec, apiTokenPrefixText + id + "." + secret, nil
}

// RevokeApiToken revokes an API token.
func (s *Store) RevokeApiToken(ctx context.Context, id string) error {
	ok, err := s.commit(ctx, s.cli.Txn(ctx).If(present(apiTokenKey(id))).Then(clientv3.OpDelete(apiTokenKey(id))))
	if err == nil && !ok {
		err = errs.Wrapf(errs.ErrIdentityNotFound, "no API token %q", id)
	}
	return err
}

// AccountByName returns an account by name.
func (s *Store) AccountByName(name string) (*metadatav1.AccountRecord, error) {
	if a, ok := s.cache.accountByName(name); ok {
		return a, nil
	}
	return nil, errs.Wrapf(errs.ErrIdentityNotFound, "no account named %q", name)
}

// UserByName returns a user of an account by name.
func (s *Store) UserByName(account, name string) (*metadatav1.UserRecord, error) {
	if u, ok := s.cache.userByName(account, name); ok {
		return u, nil
	}
	return nil, errs.Wrapf(errs.ErrIdentityNotFound, "no user named %q in account %s", name, account)
}

// maxStatements bounds a queue policy, so that deciding stays cheap.
const maxStatements = 32

// PolicyActions are the actions a queue policy may name (DMS's).
var PolicyActions = []string{"GetQueue", "CreateGroup", "GetGroups", "DeleteGroup", "ProduceMessages", "ConsumeMessages"}

func checkPolicy(p *dmsv1.QueuePolicy) error {
	if n := len(p.GetStatements()); n > maxStatements {
		return errs.Wrapf(errs.ErrIdentityInvalid, "a queue policy has at most %d statements, this one %d", maxStatements, n)
	}
	for i, st := range p.GetStatements() {
		if st.GetEffect() != dmsv1.PolicyEffect_POLICY_EFFECT_ALLOW && st.GetEffect() != dmsv1.PolicyEffect_POLICY_EFFECT_DENY {
			return errs.Wrapf(errs.ErrIdentityInvalid, "statement %d: effect must be POLICY_EFFECT_ALLOW or POLICY_EFFECT_DENY", i)
		}
		if len(st.GetPrincipals()) == 0 || len(st.GetActions()) == 0 {
			return errs.Wrapf(errs.ErrIdentityInvalid, "statement %d: needs principals and actions", i)
		}
		for _, pr := range st.GetPrincipals() {
			kind, id, _ := strings.Cut(pr, "/")
			if (kind != "projects" && kind != "users") || !projectIDPattern.MatchString(id) {
				return errs.Wrapf(errs.ErrIdentityInvalid, "statement %d: principal %q is not projects/{32-hex id} or users/{32-hex id}", i, pr)
			}
		}
		for _, a := range st.GetActions() {
			if !slices.Contains(PolicyActions, a) {
				return errs.Wrapf(errs.ErrIdentityInvalid, "statement %d: action %q is not one of %v", i, a, PolicyActions)
			}
		}
	}
	return nil
}

// SetQueuePolicy replaces the policy of a queue; an empty one removes it.
func (s *Store) SetQueuePolicy(ctx context.Context, project, queueID string, p *dmsv1.QueuePolicy) error {
	if err := checkPolicy(p); err != nil {
		return err
	}
	op := clientv3.OpDelete(policyKey(queueID))
	if len(p.GetStatements()) > 0 {
		op = clientv3.OpPut(policyKey(queueID), marshal(&metadatav1.QueuePolicyRecord{ProjectId: project, QueueId: queueID, Policy: p}))
	}
	_, err := s.commit(ctx, s.cli.Txn(ctx).Then(op))
	return err
}
