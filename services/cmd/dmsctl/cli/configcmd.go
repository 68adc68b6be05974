package cli

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

func (a *app) configCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Named contexts: which cluster, project and credential to use",
		Long: `Contexts name a cluster (addr), a project and a credential (a token, or a
user and password with the http-addr that issues tokens). They are kept in
$DMSCTL_CONFIG, else ~/.config/dmsctl/config.yaml (mode 0600). The current
context applies unless --context names another; flags override it.`,
		Example: `  dmsctl config set-context prod --addr dms.example:9090 --project 0123... --token $TOKEN --tls
  dmsctl config set-context local --addr 127.0.0.1:9090 --http-addr 127.0.0.1:8080 --user admin --password ...
  dmsctl config use-context prod`,
		PersistentPreRunE: func(*cobra.Command, []string) error { a.started = true; return nil },
	}
	var c Context
	set := &cobra.Command{
		Use:   "set-context NAME",
		Short: "Create or change a context (only the flags given change)",
		Args:  exactArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, path, err := loadConfig()
			if err != nil {
				return err
			}
			cur, ok := cfg.Contexts[args[0]]
			if !ok {
				cur = &Context{}
				cfg.Contexts[args[0]] = cur
			}
			f := cmd.Flags()
			for name, apply := range map[string]func(){
				"addr": func() { cur.Addr = c.Addr }, "http-addr": func() { cur.HTTPAddr = c.HTTPAddr }, "project": func() { cur.Project = c.Project },
				"output": func() { cur.Output = c.Output }, "token": func() { cur.Token = c.Token }, "user": func() { cur.User = c.User },
				"password": func() { cur.Password = c.Password }, "account": func() { cur.Account = c.Account }, "tls": func() { cur.TLS = c.TLS },
				"ca-file": func() { cur.CAFile = c.CAFile }, "insecure-skip-verify": func() { cur.InsecureSkipVerify = c.InsecureSkipVerify },
			} {
				if f.Changed(name) {
					apply()
				}
			}
			if cfg.CurrentContext == "" {
				cfg.CurrentContext = args[0]
			}
			if err := cfg.save(path); err != nil {
				return err
			}
			fmt.Fprintf(a.out, "context %s saved in %s\n", args[0], path)
			return nil
		},
	}
	f := set.Flags()
	f.StringVar(&c.Addr, "addr", "", "gRPC address HOST:PORT")
	f.StringVar(&c.HTTPAddr, "http-addr", "", "HTTP address, to log in with --user and --password")
	f.StringVar(&c.Project, "project", "", "project id")
	f.StringVar(&c.Output, "output", "", "default output: table, json or yaml")
	f.StringVar(&c.Token, "token", "", "bearer token")
	f.StringVar(&c.User, "user", "", "user name, to log in")
	f.StringVar(&c.Password, "password", "", "the user's password")
	f.StringVar(&c.Account, "account", "", "the user's account (default Default)")
	f.BoolVar(&c.TLS, "tls", false, "connect with TLS")
	f.StringVar(&c.CAFile, "ca-file", "", "PEM CA certificates to trust")
	f.BoolVar(&c.InsecureSkipVerify, "insecure-skip-verify", false, "do not verify the server's certificate (tests only)")
	// The root's --addr, --project and --output would shadow these.
	set.Flags().SortFlags = false

	use := &cobra.Command{
		Use:   "use-context NAME",
		Short: "Make a context the current one",
		Args:  exactArgs(1, "NAME"),
		ValidArgsFunction: func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
			cfg, _, _ := loadConfig()
			if cfg == nil {
				return nil, cobra.ShellCompDirectiveError
			}
			return cfg.names(), cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(_ *cobra.Command, args []string) error {
			cfg, path, err := loadConfig()
			if err != nil {
				return err
			}
			if _, ok := cfg.Contexts[args[0]]; !ok {
				return notFoundf("no context %q in %s", args[0], path)
			}
			cfg.CurrentContext = args[0]
			if err := cfg.save(path); err != nil {
				return err
			}
			fmt.Fprintf(a.out, "current context: %s\n", args[0])
			return nil
		},
	}
	get := &cobra.Command{
		Use:   "get-contexts",
		Short: "List the contexts (credentials are not shown)",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			cfg, _, err := loadConfig()
			if err != nil {
				return err
			}
			t := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
			row(t, "CURRENT", "NAME", "ADDR", "PROJECT", "CREDENTIAL")
			for _, name := range cfg.names() {
				c := cfg.Contexts[name]
				cur, cred := "", "-"
				if name == cfg.CurrentContext {
					cur = "*"
				}
				switch {
				case c.Token != "":
					cred = "token"
				case c.User != "":
					cred = "user " + c.User
				}
				row(t, cur, name, orDash(c.Addr), orDash(c.Project), cred)
			}
			return t.Flush()
		},
	}
	current := &cobra.Command{
		Use:   "current-context",
		Short: "Print the current context's name",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			cfg, _, err := loadConfig()
			if err != nil {
				return err
			}
			if cfg.CurrentContext == "" {
				return notFoundf("no current context")
			}
			fmt.Fprintln(a.out, cfg.CurrentContext)
			return nil
		},
	}
	del := &cobra.Command{
		Use:   "delete-context NAME",
		Short: "Delete a context",
		Args:  exactArgs(1, "NAME"),
		RunE: func(_ *cobra.Command, args []string) error {
			cfg, path, err := loadConfig()
			if err != nil {
				return err
			}
			if _, ok := cfg.Contexts[args[0]]; !ok {
				return notFoundf("no context %q in %s", args[0], path)
			}
			delete(cfg.Contexts, args[0])
			if cfg.CurrentContext == args[0] {
				cfg.CurrentContext = ""
			}
			return cfg.save(path)
		},
	}
	cmd.AddCommand(set, use, get, current, del)
	return cmd
}
