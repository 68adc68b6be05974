// Command dmsctl is the operator's command line for DMS: queues, consumer
// groups, messages, dead letters, traces, the cluster and tenancy, over the
// native gRPC API. `dmsctl help` lists the commands; `dmsctl help
// exit-codes` the exit codes scripts can rely on.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/opendms/dms/services/cmd/dmsctl/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.MainContext(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
