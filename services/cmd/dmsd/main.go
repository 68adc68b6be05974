// Command dmsd runs the DMS roles. With no flags it runs every role with an
// embedded etcd and a local data directory; -target and -etcd.endpoints
// spread the roles over several processes.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/opendms/dms/services/server"
)

func main() {
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
	fmt.Printf("dmsd listening: grpc=%s http=%s etcd=%s internal=%s node=%s\n", srv.GRPCAddr, srv.HTTPAddr, srv.EtcdEndpoint, srv.InternalGRPCAddr, srv.NodeName)
	<-ctx.Done()
	logger.Info("dmsd stopping")
	srv.Stop()
}
