// Package cli is dmsctl: the cobra command tree, its configuration
// contexts, output formats and exit codes. It talks to dmsd over the
// native gRPC API only (the Keystone HTTP endpoint issues tokens for a
// user and password). Main runs it; tests call Main in-process.
package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
)

// Defaults of the global flags.
const (
	defaultAddr    = "127.0.0.1:9090"
	defaultProject = "0123456789abcdef0123456789abcdef" // dmsd's -protocols.default-project
	// maxMessageBytes bounds a gRPC message both ways: a full batch of
	// 1000 messages and their framing.
	maxMessageBytes = 64 << 20
)

// app is one run of dmsctl: its streams, flags and, once a command needs
// it, the connection.
type app struct {
	in       io.Reader
	out, err io.Writer

	// Global flags; empty when not given, then the context decides.
	addr, project, output, contextName, token string
	timeout                                   time.Duration
	tls                                       bool
	caFile                                    string

	ctx      *Context
	conn     *grpc.ClientConn
	unscoped bool // the command needs an unscoped login (tenancy)
	started  bool // a command's own code ran: errors before are usage errors
}

// Main runs dmsctl with args and returns its exit code.
func Main(args []string, in io.Reader, out, errOut io.Writer) int {
	return MainContext(context.Background(), args, in, out, errOut)
}

// MainContext is Main ending its long operations when ctx ends (an
// interrupt): consume --follow then stops cleanly.
func MainContext(ctx context.Context, args []string, in io.Reader, out, errOut io.Writer) int {
	a := &app{in: in, out: out, err: errOut}
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetIn(in)
	root.SetOut(out)
	root.SetErr(errOut)
	err := root.ExecuteContext(ctx)
	if a.conn != nil {
		_ = a.conn.Close()
	}
	if err != nil {
		fmt.Fprintf(errOut, "dmsctl: %s\n", errorLine(err))
		if !a.started {
			// Cobra's own refusals (an unknown command, a wrong number of
			// arguments) come before any command ran.
			return ExitUsage
		}
		return exitCode(err)
	}
	return ExitOK
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "dmsctl",
		Short: "Operate DMS: queues, groups, messages, dead letters, traces, the cluster and tenancy",
		Long: `dmsctl operates a DMS cluster over its native gRPC API.

Where it connects, as whom and in which project comes from the flags, else
from the current context of the configuration file (dmsctl config --help),
else from the defaults (127.0.0.1:9090, the default project, no credential).
Queues and groups are named by display name or id. Output is a table by
default; -o json and -o yaml print the API's own shapes (field names as in
the REST API) for scripts. Exit codes: dmsctl help exit-codes.`,
		SilenceUsage:      true,
		SilenceErrors:     true,
		CompletionOptions: cobra.CompletionOptions{HiddenDefaultCmd: false},
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error { return a.resolve(cmd) },
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err.Error()} })
	f := root.PersistentFlags()
	f.StringVar(&a.addr, "addr", "", "dmsd gRPC address HOST:PORT (default "+defaultAddr+", or the context's)")
	f.StringVar(&a.project, "project", "", "project id (default the context's, else "+defaultProject+")")
	f.StringVarP(&a.output, "output", "o", "", "output format: table, json or yaml (default table, or the context's)")
	f.StringVar(&a.contextName, "context", "", "configuration context to use instead of the current one")
	f.StringVar(&a.token, "token", "", "bearer token (a Keystone or API token); default the context's, or $DMS_TOKEN")
	f.DurationVar(&a.timeout, "timeout", 30*time.Second, "how long one call may take")
	f.BoolVar(&a.tls, "tls", false, "connect with TLS (also the context's tls: true)")
	f.StringVar(&a.caFile, "ca-file", "", "PEM CA certificates to trust for TLS (default the system's)")
	_ = root.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"table", "json", "yaml"}, cobra.ShellCompDirectiveNoFileComp))
	_ = root.RegisterFlagCompletionFunc("context", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		cfg, _, err := loadConfig()
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		return cfg.names(), cobra.ShellCompDirectiveNoFileComp
	})

	root.AddGroup(&cobra.Group{ID: "queues", Title: "Queues and messages:"}, &cobra.Group{ID: "ops", Title: "Operations:"}, &cobra.Group{ID: "tenancy", Title: "Tenancy:"})
	for _, c := range []*cobra.Command{a.queueCommand(), a.groupCommand(), a.produceCommand(), a.consumeCommand(), a.browseCommand(), a.dlqCommand(), a.traceCommand()} {
		c.GroupID = "queues"
		root.AddCommand(c)
	}
	for _, c := range []*cobra.Command{a.clusterCommand(), a.benchCommand(), a.configCommand()} {
		c.GroupID = "ops"
		root.AddCommand(c)
	}
	for _, c := range a.tenancyCommands() {
		c.GroupID = "tenancy"
		root.AddCommand(c)
	}
	root.AddCommand(&cobra.Command{
		Use:   "exit-codes",
		Short: "The exit codes scripts can rely on",
		Long:  exitCodesHelp,
		Run:   func(cmd *cobra.Command, _ []string) { _ = cmd.Help() },
	})
	return root
}

// resolve settles the global settings: flags first, then the context.
func (a *app) resolve(*cobra.Command) error {
	a.started = true
	cfg, path, err := loadConfig()
	if err != nil {
		return err
	}
	name := a.contextName
	if name == "" {
		name = cfg.CurrentContext
	}
	c := &Context{}
	if name != "" {
		found, ok := cfg.Contexts[name]
		if !ok && a.contextName != "" {
			return usagef("no context %q in %s (dmsctl config get-contexts lists them)", name, path)
		}
		if ok {
			copied := *found
			c = &copied
		}
	}
	if a.addr != "" {
		c.Addr = a.addr
	}
	if c.Addr == "" {
		c.Addr = defaultAddr
	}
	if a.project != "" {
		c.Project = a.project
	}
	if c.Project == "" {
		c.Project = defaultProject
	}
	if a.output != "" {
		c.Output = a.output
	}
	if c.Output == "" {
		c.Output = "table"
	}
	switch c.Output {
	case "table", "json", "yaml":
	default:
		return usagef("output %q is not table, json or yaml", c.Output)
	}
	if a.token != "" {
		c.Token = a.token
	} else if t := os.Getenv("DMS_TOKEN"); t != "" && c.Token == "" {
		c.Token = t
	}
	if a.tls {
		c.TLS = true
	}
	if a.caFile != "" {
		c.CAFile, c.TLS = a.caFile, true
	}
	a.ctx = c
	return nil
}

// dial connects once, lazily: commands that need no server (config,
// completion, help) never dial.
func (a *app) dial() (*grpc.ClientConn, error) {
	if a.conn != nil {
		return a.conn, nil
	}
	creds := insecure.NewCredentials()
	if a.ctx.TLS {
		tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: a.ctx.InsecureSkipVerify} //nolint:gosec // only when the context asks for it
		if a.ctx.CAFile != "" {
			pem, err := os.ReadFile(a.ctx.CAFile)
			if err != nil {
				return nil, usagef("ca-file: %v", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, usagef("ca-file %s holds no PEM certificate", a.ctx.CAFile)
			}
			tc.RootCAs = pool
		}
		creds = credentials.NewTLS(tc)
	}
	conn, err := grpc.NewClient(a.ctx.Addr, grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMessageBytes), grpc.MaxCallSendMsgSize(maxMessageBytes)))
	if err != nil {
		return nil, usagef("address %q: %v", a.ctx.Addr, err)
	}
	a.conn = conn
	return conn, nil
}

// call returns a context for one call: the timeout and the credential.
func (a *app) call(parent context.Context) (context.Context, context.CancelFunc, error) {
	if a.ctx.Token == "" && a.ctx.User != "" {
		tok, err := a.login(parent)
		if err != nil {
			return nil, nil, err
		}
		a.ctx.Token = tok
	}
	ctx, cancel := context.WithTimeout(parent, a.timeout)
	if a.ctx.Token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+a.ctx.Token)
	}
	return ctx, cancel, nil
}

// stream returns a context without the per-call timeout, for long
// operations (produce from stdin, consume --follow, redrive); it ends with
// the command's context (an interrupt).
func (a *app) stream(parent context.Context) (context.Context, error) {
	if a.ctx.Token == "" && a.ctx.User != "" {
		tok, err := a.login(parent)
		if err != nil {
			return nil, err
		}
		a.ctx.Token = tok
	}
	if a.ctx.Token != "" {
		return metadata.AppendToOutgoingContext(parent, "authorization", "Bearer "+a.ctx.Token), nil
	}
	return parent, nil
}

func (a *app) queues() (dmsv1.QueueServiceClient, error) {
	conn, err := a.dial()
	if err != nil {
		return nil, err
	}
	return dmsv1.NewQueueServiceClient(conn), nil
}

// Resource names.
func (a *app) projectName() string { return "projects/" + a.ctx.Project }

func (a *app) queueName(q string) string {
	if strings.HasPrefix(q, "projects/") {
		return q
	}
	return a.projectName() + "/queues/" + q
}

func (a *app) groupName(q, g string) string { return a.queueName(q) + "/groups/" + g }
