package identity

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	metadatav1 "github.com/opendms/dms/gen/go/dms/cluster/metadata/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/authz"
	"github.com/opendms/dms/services/errs"
)

// Cache is every process's copy of the identity records, kept current by an
// etcd watch, so that authenticating and deciding a call reads memory only.
// It implements authz.Directory.
type Cache struct {
	cli    *clientv3.Client
	logger *slog.Logger

	mu           sync.RWMutex
	accounts     map[string]*metadatav1.AccountRecord
	accountNames map[string]string
	projects     map[string]*metadatav1.ProjectRecord
	users        map[string]*metadatav1.UserRecord
	userNames    map[string]string                                   // account/name → id
	bindings     map[string]map[string]*metadatav1.RoleBindingRecord // project → user → binding
	accessKeys   map[string]*metadatav1.AccessKeyRecord
	apiTokens    map[string]*metadatav1.ApiTokenRecord
	policies     map[string]*metadatav1.QueuePolicyRecord // queue id → policy
	operator     string
	// resolveQueue finds a queue's id from its project and id or display
	// name (the catalog's); nil resolves ids only.
	resolveQueue func(project, ref string) (string, bool)

	revision int64
	advanced chan struct{}
}

// NewCache returns an empty cache; Start fills it.
func NewCache(cli *clientv3.Client, logger *slog.Logger) *Cache {
	c := &Cache{cli: cli, logger: logger, advanced: make(chan struct{})}
	c.reset()
	return c
}

func (c *Cache) reset() {
	c.accounts, c.accountNames = map[string]*metadatav1.AccountRecord{}, map[string]string{}
	c.projects = map[string]*metadatav1.ProjectRecord{}
	c.users, c.userNames = map[string]*metadatav1.UserRecord{}, map[string]string{}
	c.bindings = map[string]map[string]*metadatav1.RoleBindingRecord{}
	c.accessKeys, c.apiTokens = map[string]*metadatav1.AccessKeyRecord{}, map[string]*metadatav1.ApiTokenRecord{}
	c.policies = map[string]*metadatav1.QueuePolicyRecord{}
	c.operator = ""
}

// Start loads the records, then follows them until ctx ends.
func (c *Cache) Start(ctx context.Context) error {
	rev, err := c.reload(ctx)
	if err != nil {
		return err
	}
	go c.watchLoop(ctx, rev)
	return nil
}

func (c *Cache) reload(ctx context.Context) (int64, error) {
	resp, err := c.cli.Get(ctx, Prefix, clientv3.WithPrefix())
	if err != nil {
		return 0, errs.Wrapf(errs.ErrUnavailable, "identity: reading etcd: %v", err)
	}
	c.mu.Lock()
	c.reset()
	for _, kv := range resp.Kvs {
		c.applyLocked(string(kv.Key), kv.Value, false)
	}
	c.mu.Unlock()
	c.setRevision(resp.Header.Revision)
	return resp.Header.Revision, nil
}

func (c *Cache) watchLoop(ctx context.Context, rev int64) {
	for ctx.Err() == nil {
		wch := c.cli.Watch(clientv3.WithRequireLeader(ctx), Prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1))
		for resp := range wch {
			if err := resp.Err(); err != nil {
				c.logger.Warn("identity watch interrupted; reloading", "err", err)
				break
			}
			c.mu.Lock()
			for _, ev := range resp.Events {
				c.applyLocked(string(ev.Kv.Key), ev.Kv.Value, ev.Type == clientv3.EventTypeDelete)
			}
			c.mu.Unlock()
			rev = resp.Header.Revision
			c.setRevision(rev)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
		if r, err := c.reload(ctx); err == nil {
			rev = r
		}
	}
}

func (c *Cache) setRevision(rev int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if rev > c.revision {
		c.revision = rev
		close(c.advanced)
		c.advanced = make(chan struct{})
	}
}

// WaitForRevision blocks until the cache reflects etcd revision rev, so that
// the writer of a change reads it back.
func (c *Cache) WaitForRevision(ctx context.Context, rev int64) error {
	for {
		c.mu.RLock()
		current, advanced := c.revision, c.advanced
		c.mu.RUnlock()
		if current >= rev {
			return nil
		}
		select {
		case <-advanced:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func decodeInto[T proto.Message](c *Cache, key string, value []byte, rec T) (T, bool) {
	if err := proto.Unmarshal(value, rec); err != nil {
		c.logger.Error("identity: undecodable record", "key", key, "err", err)
		return rec, false
	}
	return rec, true
}

func (c *Cache) applyLocked(key string, value []byte, deleted bool) {
	switch {
	case key == operatorKey:
		c.operator = ""
		if !deleted {
			c.operator = string(value)
		}
	case strings.HasPrefix(key, accountPrefix):
		id := strings.TrimPrefix(key, accountPrefix)
		if old := c.accounts[id]; old != nil {
			delete(c.accountNames, old.GetName())
		}
		delete(c.accounts, id)
		if rec, ok := decodeInto(c, key, value, &metadatav1.AccountRecord{}); !deleted && ok {
			c.accounts[id], c.accountNames[rec.GetName()] = rec, id
		}
	case strings.HasPrefix(key, projectPrefix):
		id := strings.TrimPrefix(key, projectPrefix)
		delete(c.projects, id)
		if rec, ok := decodeInto(c, key, value, &metadatav1.ProjectRecord{}); !deleted && ok {
			c.projects[id] = rec
		}
	case strings.HasPrefix(key, userPrefix):
		id := strings.TrimPrefix(key, userPrefix)
		if old := c.users[id]; old != nil {
			delete(c.userNames, old.GetAccountId()+"/"+old.GetName())
		}
		delete(c.users, id)
		if rec, ok := decodeInto(c, key, value, &metadatav1.UserRecord{}); !deleted && ok {
			c.users[id], c.userNames[rec.GetAccountId()+"/"+rec.GetName()] = rec, id
		}
	case strings.HasPrefix(key, bindingPrefix):
		project, user, _ := strings.Cut(strings.TrimPrefix(key, bindingPrefix), "/")
		delete(c.bindings[project], user)
		if rec, ok := decodeInto(c, key, value, &metadatav1.RoleBindingRecord{}); !deleted && ok {
			if c.bindings[project] == nil {
				c.bindings[project] = map[string]*metadatav1.RoleBindingRecord{}
			}
			c.bindings[project][user] = rec
		}
	case strings.HasPrefix(key, accessKeyPrefix):
		ak := strings.TrimPrefix(key, accessKeyPrefix)
		delete(c.accessKeys, ak)
		if rec, ok := decodeInto(c, key, value, &metadatav1.AccessKeyRecord{}); !deleted && ok {
			c.accessKeys[ak] = rec
		}
	case strings.HasPrefix(key, policyPrefix):
		id := strings.TrimPrefix(key, policyPrefix)
		delete(c.policies, id)
		if rec, ok := decodeInto(c, key, value, &metadatav1.QueuePolicyRecord{}); !deleted && ok {
			c.policies[id] = rec
		}
	case strings.HasPrefix(key, apiTokenPrefix):
		id := strings.TrimPrefix(key, apiTokenPrefix)
		delete(c.apiTokens, id)
		if rec, ok := decodeInto(c, key, value, &metadatav1.ApiTokenRecord{}); !deleted && ok {
			c.apiTokens[id] = rec
		}
	}
}

// User implements authz.Directory.
func (c *Cache) User(id string) (authz.UserInfo, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	u, ok := c.users[id]
	if !ok {
		return authz.UserInfo{}, false
	}
	return authz.UserInfo{ID: u.GetId(), AccountID: u.GetAccountId(), AccountAdmin: u.GetAccountAdmin()}, true
}

// ProjectAccount implements authz.Directory.
func (c *Cache) ProjectAccount(project string) (string, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	p, ok := c.projects[project]
	return p.GetAccountId(), ok
}

// Roles implements authz.Directory.
func (c *Cache) Roles(project, userID string) []dmsv1.Role {
	c.mu.RLock()
	defer c.mu.RUnlock()
	b := c.bindings[project][userID]
	out := make([]dmsv1.Role, 0, len(b.GetRoles()))
	for _, r := range b.GetRoles() {
		out = append(out, dmsv1.Role(r))
	}
	return out
}

// SetQueueResolver gives the cache the catalog's lookup of queue ids, so
// that a policy applies to a queue named by its display name too.
func (c *Cache) SetQueueResolver(resolve func(project, ref string) (string, bool)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.resolveQueue = resolve
}

// QueuePolicy implements authz.Directory.
func (c *Cache) QueuePolicy(project, queue string) *dmsv1.QueuePolicy {
	c.mu.RLock()
	resolve := c.resolveQueue
	rec, none := c.policies[queue], len(c.policies) == 0
	c.mu.RUnlock()
	if rec == nil && !none && resolve != nil {
		if id, ok := resolve(project, queue); ok {
			c.mu.RLock()
			rec = c.policies[id]
			c.mu.RUnlock()
		}
	}
	if rec == nil || rec.GetProjectId() != project {
		return nil
	}
	return rec.GetPolicy()
}

// OperatorAccount implements authz.Directory.
func (c *Cache) OperatorAccount() string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.operator
}

// The lookups below return the stored records, which callers must not
// change.

func (c *Cache) account(id string) (*metadatav1.AccountRecord, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	a, ok := c.accounts[id]
	return a, ok
}

func (c *Cache) accountByName(name string) (*metadatav1.AccountRecord, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	a, ok := c.accounts[c.accountNames[name]]
	return a, ok
}

func (c *Cache) project(id string) (*metadatav1.ProjectRecord, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	p, ok := c.projects[id]
	return p, ok
}

func (c *Cache) projectByName(account, name string) (*metadatav1.ProjectRecord, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, p := range c.projects {
		if p.GetAccountId() == account && p.GetName() == name {
			return p, true
		}
	}
	return nil, false
}

func (c *Cache) user(id string) (*metadatav1.UserRecord, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	u, ok := c.users[id]
	return u, ok
}

func (c *Cache) userByName(account, name string) (*metadatav1.UserRecord, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	u, ok := c.users[c.userNames[account+"/"+name]]
	return u, ok
}

func (c *Cache) accessKey(ak string) (*metadatav1.AccessKeyRecord, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	k, ok := c.accessKeys[ak]
	return k, ok
}

func (c *Cache) apiToken(id string) (*metadatav1.ApiTokenRecord, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	t, ok := c.apiTokens[id]
	return t, ok
}

func (c *Cache) listAccounts() []*metadatav1.AccountRecord {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]*metadatav1.AccountRecord, 0, len(c.accounts))
	for _, a := range c.accounts {
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b *metadatav1.AccountRecord) int { return strings.Compare(a.GetName(), b.GetName()) })
	return out
}

func (c *Cache) listProjects(account string) []*metadatav1.ProjectRecord {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []*metadatav1.ProjectRecord
	for _, p := range c.projects {
		if p.GetAccountId() == account {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b *metadatav1.ProjectRecord) int { return strings.Compare(a.GetName(), b.GetName()) })
	return out
}

func (c *Cache) listUsers(account string) []*metadatav1.UserRecord {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []*metadatav1.UserRecord
	for _, u := range c.users {
		if u.GetAccountId() == account {
			out = append(out, u)
		}
	}
	slices.SortFunc(out, func(a, b *metadatav1.UserRecord) int { return strings.Compare(a.GetName(), b.GetName()) })
	return out
}

func (c *Cache) listBindings(project string) []*metadatav1.RoleBindingRecord {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []*metadatav1.RoleBindingRecord
	for _, b := range c.bindings[project] {
		out = append(out, b)
	}
	slices.SortFunc(out, func(a, b *metadatav1.RoleBindingRecord) int { return strings.Compare(a.GetUserId(), b.GetUserId()) })
	return out
}

func (c *Cache) userKeys(user string) ([]*metadatav1.AccessKeyRecord, []*metadatav1.ApiTokenRecord) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var keys []*metadatav1.AccessKeyRecord
	for _, k := range c.accessKeys {
		if k.GetUserId() == user {
			keys = append(keys, k)
		}
	}
	var tokens []*metadatav1.ApiTokenRecord
	for _, t := range c.apiTokens {
		if t.GetUserId() == user {
			tokens = append(tokens, t)
		}
	}
	slices.SortFunc(keys, func(a, b *metadatav1.AccessKeyRecord) int {
		return int(a.GetCreateTimeMs() - b.GetCreateTimeMs())
	})
	slices.SortFunc(tokens, func(a, b *metadatav1.ApiTokenRecord) int {
		return int(a.GetCreateTimeMs() - b.GetCreateTimeMs())
	})
	return keys, tokens
}

func (c *Cache) userBindings(user string) []string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var projects []string
	for project, users := range c.bindings {
		if users[user] != nil {
			projects = append(projects, project)
		}
	}
	return projects
}

// queueID resolves a queue reference to its id.
func (c *Cache) queueID(project, ref string) (string, bool) {
	c.mu.RLock()
	resolve := c.resolveQueue
	c.mu.RUnlock()
	if resolve == nil {
		return ref, true
	}
	return resolve(project, ref)
}

func (c *Cache) queuePolicy(queueID string) *dmsv1.QueuePolicy {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.policies[queueID].GetPolicy()
}

// projectTokens returns the API tokens scoped to a project and the queue
// policies recorded for its queues.
func (c *Cache) projectTokensAndPolicies(project string) (tokens, policies []string) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for id, t := range c.apiTokens {
		if t.GetProjectId() == project {
			tokens = append(tokens, id)
		}
	}
	for id, p := range c.policies {
		if p.GetProjectId() == project {
			policies = append(policies, id)
		}
	}
	return tokens, policies
}
