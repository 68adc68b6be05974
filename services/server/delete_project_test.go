package server_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/stretchr/testify/require"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/catalog"
	"github.com/opendms/dms/services/datakeys"
	"github.com/opendms/dms/services/rpcstatus"
	"github.com/opendms/dms/services/storage/partitionlog"
	"github.com/opendms/dms/services/testserver"
)

// Deleting a project, with authentication and encryption at rest on: it is
// refused while the project has a queue (and by a project administrator
// who is not an account administrator); once the queue is deleted it
// destroys the project's data keys — a copy of its segment files no longer
// opens with any key the node holds — and every credential of the project
// stops working there: an API token and a session token scoped to it, the
// role that an access key's and an unscoped token's user had in it.
func TestDeleteProjectShredsItsKeys(t *testing.T) {
	master := make([]byte, 32)
	_, _ = rand.Read(master)
	keyFile := filepath.Join(t.TempDir(), "keys")
	require.NoError(t, os.WriteFile(keyFile, []byte("1:"+base64.StdEncoding.EncodeToString(master)+"\n"), 0o600))
	s := startAuth(t, testserver.WithFlags("-storage.encryption-key-file", keyFile))
	ctx := context.Background()
	admin := bearer(ctx, unscopedToken(t, s, "Default", "admin", adminPassword))
	id := dmsv1.NewIdentityServiceClient(s.Conn)
	keys := dmsv1.NewDataKeyServiceClient(s.Conn)
	accounts, err := id.ListAccounts(admin, &dmsv1.ListAccountsRequest{})
	require.NoError(t, err)
	account := accounts.GetAccounts()[0].GetId()
	p, err := id.CreateProject(admin, &dmsv1.CreateProjectRequest{AccountId: account, Project: &dmsv1.Project{Name: "doomed"}})
	require.NoError(t, err)
	project := p.GetProject().GetId()
	u, err := id.CreateUser(admin, &dmsv1.CreateUserRequest{AccountId: account, User: &dmsv1.User{Name: "owner"}, Password: "owner's password"})
	require.NoError(t, err)
	owner := u.GetUser().GetId()
	_, err = id.GrantRole(admin, &dmsv1.GrantRoleRequest{ProjectId: project, UserId: owner, Role: dmsv1.Role_ROLE_ADMIN})
	require.NoError(t, err)
	ak, err := id.CreateAccessKey(admin, &dmsv1.CreateAccessKeyRequest{UserId: owner})
	require.NoError(t, err)
	scopedAPI, err := id.CreateApiToken(admin, &dmsv1.CreateApiTokenRequest{UserId: owner, ProjectId: project})
	require.NoError(t, err)
	session, _, code := keystoneToken(t, s, "Default", "owner", "owner's password", project)
	require.Equal(t, http.StatusCreated, code)
	unscoped := unscopedToken(t, s, "Default", "owner", "owner's password")

	// The owner writes through the scoped API token.
	octx := bearer(ctx, scopedAPI.GetToken())
	q, err := s.Queues().CreateQueue(octx, &dmsv1.CreateQueueRequest{Parent: "projects/" + project, Queue: &dmsv1.Queue{DisplayName: "orders"}})
	require.NoError(t, err)
	_, err = s.Producer().SendMessages(octx, &dmsv1.SendMessagesRequest{Queue: q.GetQueue().GetName(), Messages: []*dmsv1.Message{{Body: []byte("secret-doomed")}}})
	require.NoError(t, err)
	backup := t.TempDir()
	copyTree(t, filepath.Join(s.DataDir, "storage", "q", q.GetQueue().GetId()), backup)
	require.NotEmpty(t, readSealedBatches(t, backup))

	_, err = s.Queues().UpdateProjectQuotas(admin, &dmsv1.UpdateProjectQuotasRequest{Name: "projects/" + project, Quotas: &dmsv1.ProjectQuotas{MaxQueues: 7}})
	require.NoError(t, err)

	// A project administrator may not delete the project, nor may anyone
	// while it has a queue; nothing changes.
	_, err = id.DeleteProject(bearer(ctx, unscoped), &dmsv1.DeleteProjectRequest{ProjectId: project})
	require.Equal(t, "PERMISSION_DENIED", rpcstatus.Reason(err), "%v", err)
	_, err = id.DeleteProject(admin, &dmsv1.DeleteProjectRequest{ProjectId: project})
	require.Equal(t, "PROJECT_NOT_EMPTY", rpcstatus.Reason(err), "%v", err)
	status, body := call(t, "DELETE", "http://"+s.HTTPAddr+"/v1/projects/"+project, "", map[string]string{"Authorization": "Bearer " + unscopedToken(t, s, "Default", "admin", adminPassword)})
	require.Equal(t, http.StatusBadRequest, status, "%v", body)
	l, err := keys.ListDataKeys(admin, &dmsv1.ListDataKeysRequest{ProjectId: project})
	require.NoError(t, err)
	require.Len(t, l.GetKeys(), 1)
	require.Equal(t, dmsv1.DataKeyState_DATA_KEY_STATE_ACTIVE, l.GetKeys()[0].GetState())
	_, err = s.Queues().ListQueues(bearer(ctx, session), &dmsv1.ListQueuesRequest{Parent: "projects/" + project})
	require.NoError(t, err, "a refused deletion broke the scoped session token")

	_, err = s.Queues().DeleteQueue(octx, &dmsv1.DeleteQueueRequest{Name: q.GetQueue().GetName()})
	require.NoError(t, err)
	del, err := id.DeleteProject(admin, &dmsv1.DeleteProjectRequest{ProjectId: project})
	require.NoError(t, err)
	require.EqualValues(t, 1, del.GetDestroyedDataKeys())

	// The keys are destroyed; no key the node holds opens the copy.
	l, err = keys.ListDataKeys(admin, &dmsv1.ListDataKeysRequest{ProjectId: project})
	require.NoError(t, err)
	require.Len(t, l.GetKeys(), 1)
	require.Equal(t, dmsv1.DataKeyState_DATA_KEY_STATE_DESTROYED, l.GetKeys()[0].GetState())
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{s.EtcdEndpoint}})
	require.NoError(t, err)
	defer cli.Close()
	ring, err := partitionlog.NewKeyring(partitionlog.Key{ID: 1, Secret: master})
	require.NoError(t, err)
	held := nodeKeys(t, cli, datakeys.NewMasterKeyProvider(ring), master)
	for i, b := range readSealedBatches(t, backup) {
		require.Nil(t, openWithAny(b, held), "batch %d of the deleted project's copy opened", i)
	}

	// The project and what was scoped to it are gone.
	projects, err := id.ListProjects(admin, &dmsv1.ListProjectsRequest{AccountId: account})
	require.NoError(t, err)
	for _, p := range projects.GetProjects() {
		require.NotEqual(t, project, p.GetId())
	}
	_, err = id.ListRoleBindings(admin, &dmsv1.ListRoleBindingsRequest{ProjectId: project})
	require.Equal(t, "IDENTITY_NOT_FOUND", rpcstatus.Reason(err), "%v", err)
	tokens, err := id.ListApiTokens(admin, &dmsv1.ListApiTokensRequest{UserId: owner})
	require.NoError(t, err)
	require.Empty(t, tokens.GetApiTokens())
	_, err = id.DeleteProject(admin, &dmsv1.DeleteProjectRequest{ProjectId: project})
	require.Equal(t, "IDENTITY_NOT_FOUND", rpcstatus.Reason(err), "%v", err)
	quotas, err := cli.Get(ctx, catalog.QuotaKey(project))
	require.NoError(t, err)
	require.Empty(t, quotas.Kvs, "the deleted project's quotas are left")

	// Every credential is refused in the project.
	list := &dmsv1.ListQueuesRequest{Parent: "projects/" + project}
	_, err = s.Queues().ListQueues(octx, list)
	require.Equal(t, "CREDENTIAL_INVALID", rpcstatus.Reason(err), "scoped API token: %v", err)
	_, err = s.Queues().ListQueues(bearer(ctx, session), list)
	require.Equal(t, "CREDENTIAL_INVALID", rpcstatus.Reason(err), "scoped session token: %v", err)
	status, body = call(t, "GET", "http://"+s.HTTPAddr+"/v3/auth/tokens", "", map[string]string{"X-Auth-Token": unscoped, "X-Subject-Token": session})
	require.Equal(t, http.StatusNotFound, status, "Keystone's validation of the scoped session token: %v", body)
	_, err = s.Queues().ListQueues(bearer(ctx, unscoped), list)
	require.Equal(t, "PERMISSION_DENIED", rpcstatus.Reason(err), "unscoped token: %v", err)
	req, err := http.NewRequest("GET", "http://"+s.HTTPAddr+"/v1/projects/"+project+"/queues", nil)
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	signSDK(req, nil, ak.GetAccessKey().GetAccessKey(), ak.GetSecretKey(), time.Now())
	status, body = do(t, req)
	require.Equal(t, http.StatusForbidden, status, "access key: %v", body)

	// The deletion is in the audit trail.
	rec := waitRecord(t, admin, s, "DeleteProject", func(r *dmsv1.AuditRecord) bool { return r.GetAllowed() && r.GetCode() == "OK" })
	require.Contains(t, rec.GetResource()+rec.GetParameters(), project, "%v", rec)
}
