// Package identity keeps who may use DMS: accounts, projects, users, role
// bindings, access keys and API tokens, in etcd under Prefix, read by every
// process through a watch-fed cache (Directory, which authz decides with);
// it authenticates credentials (passwords, session and API tokens, AK/SK
// signed requests) and serves the IdentityService admin API and the
// Keystone v3 token endpoint.
package identity

// The etcd key layout. Records are protobuf (dms.cluster.metadata.v1).
const (
	Prefix            = "/dms/identity/"
	accountPrefix     = Prefix + "accounts/"       // {account_id} → AccountRecord
	accountNamePrefix = Prefix + "account-names/"  // {name} → account_id
	projectPrefix     = Prefix + "projects/"       // {project_id} → ProjectRecord
	projectNamePrefix = Prefix + "project-names/"  // {account_id}/{name} → project_id
	userPrefix        = Prefix + "users/"          // {user_id} → UserRecord
	userNamePrefix    = Prefix + "user-names/"     // {account_id}/{name} → user_id
	bindingPrefix     = Prefix + "bindings/"       // {project_id}/{user_id} → RoleBindingRecord
	accessKeyPrefix   = Prefix + "access-keys/"    // {ak} → AccessKeyRecord
	apiTokenPrefix    = Prefix + "api-tokens/"     // {token_id} → ApiTokenRecord
	policyPrefix      = Prefix + "queue-policies/" // {queue_id} → QueuePolicyRecord
	// operatorKey names the operator's account (the Default one), whose
	// administrators administer every account.
	operatorKey = Prefix + "operator-account"
	// TokenKeyKey holds the cluster's key for session tokens and principal
	// assertions (HMAC-SHA256). It is outside Prefix so that the cache
	// never holds it beside the records.
	TokenKeyKey = "/dms/secrets/token-key"
)

func accountKey(id string) string                { return accountPrefix + id }
func accountNameKey(name string) string          { return accountNamePrefix + name }
func projectKey(id string) string                { return projectPrefix + id }
func projectNameKey(account, name string) string { return projectNamePrefix + account + "/" + name }
func userKey(id string) string                   { return userPrefix + id }
func userNameKey(account, name string) string    { return userNamePrefix + account + "/" + name }
func bindingKey(project, user string) string     { return bindingPrefix + project + "/" + user }
func accessKeyKey(ak string) string              { return accessKeyPrefix + ak }
func apiTokenKey(id string) string               { return apiTokenPrefix + id }

func policyKey(queueID string) string { return policyPrefix + queueID }
