// Command dmsd runs the DMS roles. With no flags it runs every role with an
// embedded etcd and a local data directory; -target and -etcd.endpoints
// spread the roles over several processes.
//
// `dmsd check [flags]` verifies a data directory offline (dmsd stopped):
// every segment, index and state log of the storage role, with the same
// flags (-node.data-dir, -storage.encryption-key-file, -config.file). It
// prints a report and exits 1 when it finds damage, 0 when none, 2 when it
// cannot check.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"syscall"

	"github.com/opendms/dms/services/server"
	"github.com/opendms/dms/services/storage"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "check" {
		os.Exit(check(os.Args[2:]))
	}
	var cfg server.Config
	if err := cfg.Parse(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "dmsd:", err)
		os.Exit(2)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.Log.Level)); err != nil {
		fmt.Fprintln(os.Stderr, "dmsd: -log.level:", err)
		os.Exit(2)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(cfg.Runtime.GCPercent)
	}
	srv, err := server.New(cfg, logger)
	if err != nil {
		fmt.Fprintln(os.Stderr, "dmsd:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := srv.Start(ctx); err != nil {
		logger.Error("dmsd failed to start", "err", err)
		os.Exit(1)
	}
	fmt.Printf("dmsd listening: grpc=%s http=%s etcd=%s internal=%s node=%s kafka=%s amqp=%s\n", srv.GRPCAddr, srv.HTTPAddr, srv.EtcdEndpoint, srv.InternalGRPCAddr, srv.NodeName, srv.KafkaAddr, srv.AMQPAddr)
	<-ctx.Done()
	logger.Info("dmsd stopping")
	srv.Stop()
}

// check runs `dmsd check`; it returns the exit status.
func check(args []string) int {
	var cfg server.Config
	if err := cfg.Parse(args); err != nil {
		fmt.Fprintln(os.Stderr, "dmsd check:", err)
		return 2
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	keys, err := storage.LoadKeyring(cfg.Storage, logger)
	if err != nil {
		fmt.Fprintln(os.Stderr, "dmsd check:", err)
		return 2
	}
	if keys == nil {
		fmt.Println("no encryption keys given: encrypted batches are checked by their CRC only")
	}
	dir := filepath.Join(cfg.Node.DataDir, "storage")
	if _, err := os.Stat(dir); err != nil {
		fmt.Fprintln(os.Stderr, "dmsd check:", err)
		return 2
	}
	problems, err := storage.CheckDataDir(dir, keys, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "dmsd check:", err)
		return 2
	}
	if problems > 0 {
		return 1
	}
	return 0
}
