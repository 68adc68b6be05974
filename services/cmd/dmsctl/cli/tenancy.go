package cli

import (
	"context"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
)

// unary runs one call of a command: dry run (for changes) or the call, then
// prints its answer.
func (a *app) unary(cmd *cobra.Command, action string, req proto.Message, dryRun bool,
	call func(context.Context, *grpc.ClientConn) (proto.Message, error), table func(proto.Message, *tabwriter.Writer)) error {
	if dryRun {
		return a.dryRun(action, req)
	}
	conn, err := a.dial()
	if err != nil {
		return err
	}
	ctx, cancel, err := a.call(cmd.Context())
	if err != nil {
		return err
	}
	defer cancel()
	resp, err := call(ctx, conn)
	if err != nil {
		return err
	}
	return a.show(resp, func(t *tabwriter.Writer) { table(resp, t) })
}

func ident(conn *grpc.ClientConn) dmsv1.IdentityServiceClient {
	return dmsv1.NewIdentityServiceClient(conn)
}

// tenancyCommands are the identity and audit commands. Managing identities
// needs an unscoped credential: a login by user and password asks for one.
func (a *app) tenancyCommands() []*cobra.Command {
	cmds := []*cobra.Command{a.accountCommand(), a.projectCommand(), a.userCommand(), a.roleCommand(), a.keyCommand(), a.tokenCommand(), a.policyCommand(), a.quotaCommand(), a.auditCommand()}
	for _, c := range cmds {
		if c.Name() != "policy" && c.Name() != "quota" {
			c.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
				a.unscoped = true
				return a.resolve(cmd)
			}
		}
	}
	return cmds
}

func (a *app) accountCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "account", Aliases: []string{"accounts"}, Short: "Accounts (the operator's administrators only)"}
	cmd.AddCommand(&cobra.Command{
		Use: "list", Short: "List accounts", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.unary(cmd, "", nil, false, func(ctx context.Context, c *grpc.ClientConn) (proto.Message, error) {
				return ident(c).ListAccounts(ctx, &dmsv1.ListAccountsRequest{})
			}, func(m proto.Message, t *tabwriter.Writer) {
				row(t, "ID", "NAME", "CREATED")
				for _, x := range m.(*dmsv1.ListAccountsResponse).GetAccounts() {
					row(t, x.GetId(), x.GetName(), timeText(x.GetCreateTime()))
				}
			})
		},
	})
	var dry bool
	create := &cobra.Command{
		Use: "create NAME", Short: "Create an account", Args: exactArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &dmsv1.CreateAccountRequest{Account: &dmsv1.Account{Name: args[0]}}
			return a.unary(cmd, "create account", req, dry, func(ctx context.Context, c *grpc.ClientConn) (proto.Message, error) {
				return ident(c).CreateAccount(ctx, req)
			}, func(m proto.Message, t *tabwriter.Writer) {
				x := m.(*dmsv1.CreateAccountResponse).GetAccount()
				row(t, "ID", "NAME")
				row(t, x.GetId(), x.GetName())
			})
		},
	}
	create.Flags().BoolVar(&dry, "dry-run", false, "print the request and change nothing")
	cmd.AddCommand(create)
	return cmd
}

func (a *app) projectCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "project", Aliases: []string{"projects"}, Short: "Projects of an account"}
	var account string
	list := &cobra.Command{
		Use: "list --account ID", Short: "List an account's projects", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.unary(cmd, "", nil, false, func(ctx context.Context, c *grpc.ClientConn) (proto.Message, error) {
				return ident(c).ListProjects(ctx, &dmsv1.ListProjectsRequest{AccountId: account})
			}, func(m proto.Message, t *tabwriter.Writer) {
				row(t, "ID", "NAME", "ACCOUNT", "CREATED")
				for _, x := range m.(*dmsv1.ListProjectsResponse).GetProjects() {
					row(t, x.GetId(), x.GetName(), x.GetAccountId(), timeText(x.GetCreateTime()))
				}
			})
		},
	}
	list.Flags().StringVar(&account, "account", "", "account id")
	var (
		createAccount, id string
		dry               bool
	)
	create := &cobra.Command{
		Use: "create NAME --account ID", Short: "Create a project", Args: exactArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &dmsv1.CreateProjectRequest{AccountId: createAccount, Project: &dmsv1.Project{Name: args[0], Id: id}}
			return a.unary(cmd, "create project", req, dry, func(ctx context.Context, c *grpc.ClientConn) (proto.Message, error) {
				return ident(c).CreateProject(ctx, req)
			}, func(m proto.Message, t *tabwriter.Writer) {
				x := m.(*dmsv1.CreateProjectResponse).GetProject()
				row(t, "ID", "NAME", "ACCOUNT")
				row(t, x.GetId(), x.GetName(), x.GetAccountId())
			})
		},
	}
	create.Flags().StringVar(&createAccount, "account", "", "account id")
	create.Flags().StringVar(&id, "id", "", "the project id, 32 hex digits (default: generated)")
	create.Flags().BoolVar(&dry, "dry-run", false, "print the request and change nothing")
	cmd.AddCommand(list, create)
	return cmd
}

// readPassword takes --password, else a line of stdin with --password-stdin.
func (a *app) readPassword(given string, fromStdin bool) (string, error) {
	if fromStdin {
		var line string
		if _, err := fmt.Fscanln(a.in, &line); err != nil {
			return "", usagef("--password-stdin: reading a line: %v", err)
		}
		return line, nil
	}
	if given == "" {
		return "", usagef("give --password or --password-stdin")
	}
	return given, nil
}

func (a *app) userCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "user", Aliases: []string{"users"}, Short: "Users of an account"}
	var account string
	list := &cobra.Command{
		Use: "list --account ID", Short: "List an account's users", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.unary(cmd, "", nil, false, func(ctx context.Context, c *grpc.ClientConn) (proto.Message, error) {
				return ident(c).ListUsers(ctx, &dmsv1.ListUsersRequest{AccountId: account})
			}, func(m proto.Message, t *tabwriter.Writer) {
				row(t, "ID", "NAME", "ADMIN", "CREATED")
				for _, x := range m.(*dmsv1.ListUsersResponse).GetUsers() {
					row(t, x.GetId(), x.GetName(), x.GetAccountAdmin(), timeText(x.GetCreateTime()))
				}
			})
		},
	}
	list.Flags().StringVar(&account, "account", "", "account id")
	var (
		cAccount, password string
		admin, stdin, dry  bool
	)
	create := &cobra.Command{
		Use: "create NAME --account ID --password PW", Short: "Create a user", Args: exactArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			pw, err := a.readPassword(password, stdin)
			if err != nil {
				return err
			}
			req := &dmsv1.CreateUserRequest{AccountId: cAccount, User: &dmsv1.User{Name: args[0], AccountAdmin: admin}, Password: pw}
			return a.unary(cmd, "create user", req, dry, func(ctx context.Context, c *grpc.ClientConn) (proto.Message, error) {
				return ident(c).CreateUser(ctx, req)
			}, func(m proto.Message, t *tabwriter.Writer) {
				x := m.(*dmsv1.CreateUserResponse).GetUser()
				row(t, "ID", "NAME", "ADMIN")
				row(t, x.GetId(), x.GetName(), x.GetAccountAdmin())
			})
		},
	}
	create.Flags().StringVar(&cAccount, "account", "", "account id")
	create.Flags().StringVar(&password, "password", "", "the password (or --password-stdin)")
	create.Flags().BoolVar(&stdin, "password-stdin", false, "read the password from the first line of stdin")
	create.Flags().BoolVar(&admin, "admin", false, "make the user an administrator of the account")
	create.Flags().BoolVar(&dry, "dry-run", false, "print the request (without the password) and change nothing")
	var (
		dPW    string
		dStdin bool
		dDry   bool
		delDry bool
	)
	passwd := &cobra.Command{
		Use: "passwd USER_ID", Short: "Set a user's password", Args: exactArgs(1, "USER_ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			pw, err := a.readPassword(dPW, dStdin)
			if err != nil {
				return err
			}
			req := &dmsv1.SetUserPasswordRequest{UserId: args[0], Password: pw}
			return a.unary(cmd, "set password", req, dDry, func(ctx context.Context, c *grpc.ClientConn) (proto.Message, error) {
				return ident(c).SetUserPassword(ctx, req)
			}, func(_ proto.Message, t *tabwriter.Writer) { row(t, "password set for", args[0]) })
		},
	}
	passwd.Flags().StringVar(&dPW, "password", "", "the new password")
	passwd.Flags().BoolVar(&dStdin, "password-stdin", false, "read it from stdin")
	passwd.Flags().BoolVar(&dDry, "dry-run", false, "print the request and change nothing")
	del := &cobra.Command{
		Use: "delete USER_ID", Short: "Delete a user", Args: exactArgs(1, "USER_ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &dmsv1.DeleteUserRequest{UserId: args[0]}
			return a.unary(cmd, "delete user", req, delDry, func(ctx context.Context, c *grpc.ClientConn) (proto.Message, error) {
				return ident(c).DeleteUser(ctx, req)
			}, func(_ proto.Message, t *tabwriter.Writer) { row(t, "deleted", args[0]) })
		},
	}
	del.Flags().BoolVar(&delDry, "dry-run", false, "print the request and change nothing")
	cmd.AddCommand(list, create, passwd, del)
	return cmd
}

func roleOf(s string) (dmsv1.Role, error) {
	r, ok := dmsv1.Role_value["ROLE_"+strings.ToUpper(s)]
	if !ok || r == 0 {
		return 0, usagef("role %q is not admin, producer, consumer or viewer", s)
	}
	return dmsv1.Role(r), nil
}

func (a *app) roleCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "role", Aliases: []string{"roles"}, Short: "Users' roles in the project (admin, producer, consumer, viewer)"}
	cmd.AddCommand(&cobra.Command{
		Use: "list", Short: "List the project's role bindings", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.unary(cmd, "", nil, false, func(ctx context.Context, c *grpc.ClientConn) (proto.Message, error) {
				return ident(c).ListRoleBindings(ctx, &dmsv1.ListRoleBindingsRequest{ProjectId: a.ctx.Project})
			}, func(m proto.Message, t *tabwriter.Writer) {
				row(t, "USER", "USER ID", "ROLES")
				for _, b := range m.(*dmsv1.ListRoleBindingsResponse).GetBindings() {
					var roles []string
					for _, r := range b.GetRoles() {
						roles = append(roles, strings.ToLower(strings.TrimPrefix(r.String(), "ROLE_")))
					}
					row(t, b.GetUserName(), b.GetUserId(), strings.Join(roles, ","))
				}
			})
		},
	})
	for _, verb := range []string{"grant", "revoke"} {
		var dry bool
		c := &cobra.Command{
			Use: verb + " USER_ID ROLE", Short: strings.ToUpper(verb[:1]) + verb[1:] + " a user a role in the project", Args: exactArgs(2, "USER_ID ROLE"),
			ValidArgsFunction: func(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
				if len(args) == 1 {
					return []string{"admin", "producer", "consumer", "viewer"}, cobra.ShellCompDirectiveNoFileComp
				}
				return nil, cobra.ShellCompDirectiveNoFileComp
			},
			RunE: func(cmd *cobra.Command, args []string) error {
				role, err := roleOf(args[1])
				if err != nil {
					return err
				}
				if verb == "grant" {
					req := &dmsv1.GrantRoleRequest{ProjectId: a.ctx.Project, UserId: args[0], Role: role}
					return a.unary(cmd, "grant role", req, dry, func(ctx context.Context, c *grpc.ClientConn) (proto.Message, error) {
						return ident(c).GrantRole(ctx, req)
					}, func(_ proto.Message, t *tabwriter.Writer) { row(t, "granted", args[1], "to", args[0]) })
				}
				req := &dmsv1.RevokeRoleRequest{ProjectId: a.ctx.Project, UserId: args[0], Role: role}
				return a.unary(cmd, "revoke role", req, dry, func(ctx context.Context, c *grpc.ClientConn) (proto.Message, error) {
					return ident(c).RevokeRole(ctx, req)
				}, func(_ proto.Message, t *tabwriter.Writer) { row(t, "revoked", args[1], "from", args[0]) })
			},
		}
		c.Flags().BoolVar(&dry, "dry-run", false, "print the request and change nothing")
		cmd.AddCommand(c)
	}
	return cmd
}

func (a *app) keyCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "key", Aliases: []string{"keys", "access-key"}, Short: "Access keys (AK/SK); the secret is shown once"}
	var user string
	list := &cobra.Command{
		Use: "list", Short: "List access keys (yours, or --user's)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.unary(cmd, "", nil, false, func(ctx context.Context, c *grpc.ClientConn) (proto.Message, error) {
				return ident(c).ListAccessKeys(ctx, &dmsv1.ListAccessKeysRequest{UserId: user})
			}, func(m proto.Message, t *tabwriter.Writer) {
				row(t, "ACCESS KEY", "USER", "DESCRIPTION", "CREATED", "ROTATED")
				for _, k := range m.(*dmsv1.ListAccessKeysResponse).GetAccessKeys() {
					row(t, k.GetAccessKey(), k.GetUserId(), orDash(k.GetDescription()), timeText(k.GetCreateTime()), orDash(timeText(k.GetRotateTime())))
				}
			})
		},
	}
	list.Flags().StringVar(&user, "user", "", "user id (default: yourself)")
	var (
		cUser, desc string
		cDry        bool
	)
	keyTable := func(m proto.Message, t *tabwriter.Writer) {
		var k *dmsv1.AccessKey
		var sk string
		switch r := m.(type) {
		case *dmsv1.CreateAccessKeyResponse:
			k, sk = r.GetAccessKey(), r.GetSecretKey()
		case *dmsv1.RotateAccessKeyResponse:
			k, sk = r.GetAccessKey(), r.GetSecretKey()
		}
		row(t, "ACCESS KEY", "SECRET KEY (shown once)")
		row(t, k.GetAccessKey(), sk)
	}
	create := &cobra.Command{
		Use: "create", Short: "Create an access key", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req := &dmsv1.CreateAccessKeyRequest{UserId: cUser, Description: desc}
			return a.unary(cmd, "create access key", req, cDry, func(ctx context.Context, c *grpc.ClientConn) (proto.Message, error) {
				return ident(c).CreateAccessKey(ctx, req)
			}, keyTable)
		},
	}
	create.Flags().StringVar(&cUser, "user", "", "user id (default: yourself)")
	create.Flags().StringVar(&desc, "description", "", "what the key is for")
	create.Flags().BoolVar(&cDry, "dry-run", false, "print the request and change nothing")
	var rDry, dDry bool
	rotate := &cobra.Command{
		Use: "rotate ACCESS_KEY", Short: "Give an access key a new secret", Args: exactArgs(1, "ACCESS_KEY"),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &dmsv1.RotateAccessKeyRequest{AccessKey: args[0]}
			return a.unary(cmd, "rotate access key", req, rDry, func(ctx context.Context, c *grpc.ClientConn) (proto.Message, error) {
				return ident(c).RotateAccessKey(ctx, req)
			}, keyTable)
		},
	}
	rotate.Flags().BoolVar(&rDry, "dry-run", false, "print the request and change nothing")
	del := &cobra.Command{
		Use: "delete ACCESS_KEY", Short: "Delete an access key", Args: exactArgs(1, "ACCESS_KEY"),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &dmsv1.DeleteAccessKeyRequest{AccessKey: args[0]}
			return a.unary(cmd, "delete access key", req, dDry, func(ctx context.Context, c *grpc.ClientConn) (proto.Message, error) {
				return ident(c).DeleteAccessKey(ctx, req)
			}, func(_ proto.Message, t *tabwriter.Writer) { row(t, "deleted", args[0]) })
		},
	}
	del.Flags().BoolVar(&dDry, "dry-run", false, "print the request and change nothing")
	cmd.AddCommand(list, create, rotate, del)
	return cmd
}

func (a *app) tokenCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "token", Aliases: []string{"tokens", "api-token"}, Short: "API tokens; the token is shown once"}
	var user string
	list := &cobra.Command{
		Use: "list", Short: "List API tokens (yours, or --user's)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.unary(cmd, "", nil, false, func(ctx context.Context, c *grpc.ClientConn) (proto.Message, error) {
				return ident(c).ListApiTokens(ctx, &dmsv1.ListApiTokensRequest{UserId: user})
			}, func(m proto.Message, t *tabwriter.Writer) {
				row(t, "ID", "USER", "PROJECT", "DESCRIPTION", "EXPIRES")
				for _, k := range m.(*dmsv1.ListApiTokensResponse).GetApiTokens() {
					row(t, k.GetId(), k.GetUserId(), orDash(k.GetProjectId()), orDash(k.GetDescription()), orDash(timeText(k.GetExpireTime())))
				}
			})
		},
	}
	list.Flags().StringVar(&user, "user", "", "user id (default: yourself)")
	var (
		cUser, cProject, desc string
		expires               time.Duration
		cDry                  bool
	)
	tokTable := func(m proto.Message, t *tabwriter.Writer) {
		var k *dmsv1.ApiToken
		var tok string
		switch r := m.(type) {
		case *dmsv1.CreateApiTokenResponse:
			k, tok = r.GetApiToken(), r.GetToken()
		case *dmsv1.RotateApiTokenResponse:
			k, tok = r.GetApiToken(), r.GetToken()
		}
		row(t, "ID", "TOKEN (shown once)")
		row(t, k.GetId(), tok)
	}
	create := &cobra.Command{
		Use: "create", Short: "Create an API token", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req := &dmsv1.CreateApiTokenRequest{UserId: cUser, ProjectId: cProject, Description: desc}
			if expires > 0 {
				req.ExpireTime = timestamppb.New(time.Now().Add(expires))
			}
			return a.unary(cmd, "create api token", req, cDry, func(ctx context.Context, c *grpc.ClientConn) (proto.Message, error) {
				return ident(c).CreateApiToken(ctx, req)
			}, tokTable)
		},
	}
	create.Flags().StringVar(&cUser, "user", "", "user id (default: yourself)")
	create.Flags().StringVar(&cProject, "scope-project", "", "scope the token to this project")
	create.Flags().StringVar(&desc, "description", "", "what the token is for")
	create.Flags().DurationVar(&expires, "expires-in", 0, "expire after this long (0: never)")
	create.Flags().BoolVar(&cDry, "dry-run", false, "print the request and change nothing")
	var rDry, dDry bool
	rotate := &cobra.Command{
		Use: "rotate ID", Short: "Replace an API token's secret", Args: exactArgs(1, "ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &dmsv1.RotateApiTokenRequest{Id: args[0]}
			return a.unary(cmd, "rotate api token", req, rDry, func(ctx context.Context, c *grpc.ClientConn) (proto.Message, error) {
				return ident(c).RotateApiToken(ctx, req)
			}, tokTable)
		},
	}
	rotate.Flags().BoolVar(&rDry, "dry-run", false, "print the request and change nothing")
	revoke := &cobra.Command{
		Use: "revoke ID", Short: "Revoke an API token", Args: exactArgs(1, "ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &dmsv1.RevokeApiTokenRequest{Id: args[0]}
			return a.unary(cmd, "revoke api token", req, dDry, func(ctx context.Context, c *grpc.ClientConn) (proto.Message, error) {
				return ident(c).RevokeApiToken(ctx, req)
			}, func(_ proto.Message, t *tabwriter.Writer) { row(t, "revoked", args[0]) })
		},
	}
	revoke.Flags().BoolVar(&dDry, "dry-run", false, "print the request and change nothing")
	cmd.AddCommand(list, create, rotate, revoke)
	return cmd
}

func (a *app) policyCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "policy", Short: "Queue policies (share a queue with other projects and users) and access explanations"}
	cmd.AddCommand(&cobra.Command{
		Use: "get QUEUE", Short: "Show a queue's policy", Args: exactArgs(1, "QUEUE"), ValidArgsFunction: a.completeQueues,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.unary(cmd, "", nil, false, func(ctx context.Context, c *grpc.ClientConn) (proto.Message, error) {
				return ident(c).GetQueuePolicy(ctx, &dmsv1.GetQueuePolicyRequest{Queue: a.queueName(args[0])})
			}, func(m proto.Message, t *tabwriter.Writer) {
				row(t, "EFFECT", "PRINCIPALS", "ACTIONS")
				for _, s := range m.(*dmsv1.GetQueuePolicyResponse).GetPolicy().GetStatements() {
					row(t, strings.ToLower(strings.TrimPrefix(s.GetEffect().String(), "POLICY_EFFECT_")), strings.Join(s.GetPrincipals(), ","), strings.Join(s.GetActions(), ","))
				}
			})
		},
	})
	var (
		file string
		dry  bool
	)
	set := &cobra.Command{
		Use:   "set QUEUE --file POLICY.json",
		Short: "Set a queue's policy from a JSON file (a QueuePolicy: {\"statements\":[{\"effect\":\"POLICY_EFFECT_ALLOW\",\"principals\":[...],\"actions\":[...]}]})",
		Args:  exactArgs(1, "QUEUE"), ValidArgsFunction: a.completeQueues,
		RunE: func(cmd *cobra.Command, args []string) error {
			if file == "" {
				return usagef("--file is required (- reads stdin)")
			}
			var data []byte
			var err error
			if file == "-" {
				data, err = readAll(a.in)
			} else {
				data, err = os.ReadFile(file)
			}
			if err != nil {
				return usagef("--file: %v", err)
			}
			policy := &dmsv1.QueuePolicy{}
			if err := protojson.Unmarshal(data, policy); err != nil {
				return usagef("--file: not a QueuePolicy in JSON: %v", err)
			}
			req := &dmsv1.SetQueuePolicyRequest{Queue: a.queueName(args[0]), Policy: policy}
			return a.unary(cmd, "set queue policy", req, dry, func(ctx context.Context, c *grpc.ClientConn) (proto.Message, error) {
				return ident(c).SetQueuePolicy(ctx, req)
			}, func(_ proto.Message, t *tabwriter.Writer) { row(t, "policy set on", args[0]) })
		},
	}
	set.Flags().StringVarP(&file, "file", "f", "", "the policy as JSON (- for stdin)")
	set.Flags().BoolVar(&dry, "dry-run", false, "check the file, print the request and change nothing")
	var scope string
	explain := &cobra.Command{
		Use: "explain USER_ID ACTION RESOURCE", Short: "Say whether a user may do an action on a resource, and which role or rule decided", Args: exactArgs(3, "USER_ID ACTION RESOURCE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &dmsv1.ExplainAccessRequest{UserId: args[0], Action: args[1], Resource: args[2], ScopeProjectId: scope}
			return a.unary(cmd, "", nil, false, func(ctx context.Context, c *grpc.ClientConn) (proto.Message, error) {
				return ident(c).ExplainAccess(ctx, req)
			}, func(m proto.Message, t *tabwriter.Writer) {
				r := m.(*dmsv1.ExplainAccessResponse)
				row(t, "ALLOWED", "DECIDED BY", "REASON")
				row(t, r.GetAllowed(), r.GetDecidedBy(), orDash(r.GetReason()))
			})
		},
	}
	explain.Flags().StringVar(&scope, "scope-project", "", "as a token scoped to this project")
	explain.PreRunE = func(cmd *cobra.Command, _ []string) error {
		// Explaining another user's access is identity management: it
		// needs an unscoped login.
		a.unscoped = true
		return nil
	}
	cmd.AddCommand(set, explain)
	return cmd
}

func (a *app) auditCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "The audit trail: query it, verify its hash chain"}
	var (
		since, until, principal, resource, action string
		limit                                     int
	)
	list := &cobra.Command{
		Use: "list", Aliases: []string{"query"}, Short: "Audit records matching every filter, oldest first", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			start, err := parseTime(since)
			if err != nil {
				return err
			}
			end, err := parseTime(until)
			if err != nil {
				return err
			}
			conn, err := a.dial()
			if err != nil {
				return err
			}
			req := &dmsv1.ListAuditRecordsRequest{StartTime: start, EndTime: end, Principal: principal, Resource: resource, Action: action}
			all := &dmsv1.ListAuditRecordsResponse{}
			for len(all.Records) < limit {
				req.PageSize = int32(min(limit-len(all.Records), 1000))
				ctx, cancel, err := a.call(cmd.Context())
				if err != nil {
					return err
				}
				resp, err := dmsv1.NewAuditServiceClient(conn).ListAuditRecords(ctx, req)
				cancel()
				if err != nil {
					return err
				}
				all.Records = append(all.Records, resp.GetRecords()...)
				all.NextPageToken = resp.GetNextPageToken()
				if resp.GetNextPageToken() == "" || len(resp.GetRecords()) == 0 {
					break
				}
				req.PageToken = resp.GetNextPageToken()
			}
			return a.show(all, func(t *tabwriter.Writer) {
				row(t, "OFFSET", "TIME", "PRINCIPAL", "ACTION", "RESOURCE", "RESULT")
				for _, r := range all.GetRecords() {
					result := "allowed"
					if !r.GetAllowed() {
						result = "denied"
					}
					if r.GetCode() != "" && r.GetCode() != "OK" {
						result += " " + r.GetCode() + " " + r.GetReason()
					}
					row(t, r.GetOffset(), timeText(r.GetTime()), r.GetPrincipal(), r.GetAction(), orDash(r.GetResource()), result)
				}
			})
		},
	}
	f := list.Flags()
	f.StringVar(&since, "since", "", "from this time (RFC 3339, Unix seconds, or an age such as 1h)")
	f.StringVar(&until, "until", "", "before this time")
	f.StringVar(&principal, "principal", "", "only this principal (user:{id})")
	f.StringVar(&resource, "resource", "", "only this resource (projects/p/queues/q)")
	f.StringVar(&action, "action", "", "only this action (/dms.v1.QueueService/CreateQueue)")
	f.IntVar(&limit, "limit", 100, "at most this many records")
	verify := &cobra.Command{
		Use: "verify", Short: "Walk the trail's hash chain; exit 5 when a link is broken", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var intact bool
			err := a.unary(cmd, "", nil, false, func(ctx context.Context, c *grpc.ClientConn) (proto.Message, error) {
				resp, err := dmsv1.NewAuditServiceClient(c).VerifyAuditTrail(ctx, &dmsv1.VerifyAuditTrailRequest{})
				intact = resp.GetIntact()
				return resp, err
			}, func(m proto.Message, t *tabwriter.Writer) {
				r := m.(*dmsv1.VerifyAuditTrailResponse)
				row(t, "INTACT", "RECORDS", "FIRST", "BROKEN AT", "WHY")
				broken := "-"
				if !r.GetIntact() {
					broken = fmt.Sprint(r.GetFirstBrokenOffset())
				}
				row(t, r.GetIntact(), r.GetRecordsChecked(), r.GetFirstOffset(), broken, orDash(r.GetBrokenReason()))
			})
			if err == nil && !intact {
				return brokenTrail{}
			}
			return err
		},
	}
	cmd.AddCommand(list, verify)
	return cmd
}
