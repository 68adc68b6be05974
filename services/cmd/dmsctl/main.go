// Command dmsctl is the operator's command line for DMS: queues, consumer
// groups, messages, dead letters, traces, the cluster and tenancy, over the
// native gRPC API. `dmsctl help` lists the commands; `dmsctl help
// exit-codes` the exit codes scripts can rely on.
package main

import (
	"os"

	"github.com/opendms/dms/services/cmd/dmsctl/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
