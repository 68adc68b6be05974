package cli

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// exactArgs is cobra.ExactArgs with a usage error that names the arguments.
func exactArgs(n int, names string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("%s takes %s (%d argument(s)), got %d; see %s --help", cmd.CommandPath(), names, n, len(args), cmd.CommandPath())
		}
		return nil
	}
}

// DryRun is what --dry-run prints with -o json or yaml: the request that
// would have been sent.
type DryRun struct {
	DryRun  bool            `json:"dryRun"`
	Action  string          `json:"action"`
	Request json.RawMessage `json:"request"`
}

// dryRun prints the request a command would send, and sends nothing.
func (a *app) dryRun(action string, req proto.Message) error {
	b, err := jsonOptions.Marshal(req)
	if err != nil {
		return err
	}
	if a.ctx.Output == "table" {
		fmt.Fprintf(a.out, "dry run: would %s:\n%s\n", action, b)
		return nil
	}
	return a.showValue(DryRun{DryRun: true, Action: action, Request: b}, nil)
}

// confirm asks a yes/no question on the terminal.
func confirm(a *app, question string) bool {
	fmt.Fprintf(a.err, "%s [y/N] ", question)
	line, _ := bufio.NewReader(a.in).ReadString('\n')
	answer := strings.ToLower(strings.TrimSpace(line))
	return answer == "y" || answer == "yes"
}

// parseTime reads a time given as RFC 3339, a Unix time in seconds or
// milliseconds, or an age back from now ("15m", "2h").
func parseTime(s string) (*timestamppb.Timestamp, error) {
	if s == "" {
		return nil, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return timestamppb.New(t), nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		return timestamppb.New(time.Now().Add(-d)), nil
	}
	var n int64
	if _, err := fmt.Sscanf(s, "%d", &n); err == nil && fmt.Sprint(n) == s {
		if n > 1e11 {
			return timestamppb.New(time.UnixMilli(n)), nil
		}
		return timestamppb.New(time.Unix(n, 0)), nil
	}
	return nil, usagef("time %q: give RFC 3339 (2026-01-02T15:04:05Z), Unix seconds or milliseconds, or an age such as 15m", s)
}

func sprintf(format string, args ...any) string { return fmt.Sprintf(format, args...) }

func readAll(r io.Reader) ([]byte, error) { return io.ReadAll(r) }
