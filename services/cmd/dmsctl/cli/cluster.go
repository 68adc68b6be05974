package cli

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
)

func (a *app) clusterCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "cluster", Short: "The cluster's nodes, partitions, leaders and in-sync replicas"}
	var (
		queue           string
		underReplicated bool
	)
	status := &cobra.Command{
		Use:   "status",
		Short: "Nodes (alive, zone, addresses) and every partition's leader, epoch, replicas, ISR and high watermark",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			conn, err := a.dial()
			if err != nil {
				return err
			}
			ctx, cancel, err := a.call(cmd.Context())
			if err != nil {
				return err
			}
			defer cancel()
			req := &dmsv1.GetClusterStatusRequest{}
			if queue != "" {
				req.Queue = a.queueName(queue)
			}
			resp, err := dmsv1.NewClusterServiceClient(conn).GetClusterStatus(ctx, req)
			if err != nil {
				return err
			}
			if underReplicated {
				var keep []*dmsv1.PartitionStatus
				for _, p := range resp.GetPartitions() {
					if p.GetReplication().GetUnderReplicated() || p.GetReplication().GetOffline() {
						keep = append(keep, p)
					}
				}
				resp.Partitions = keep
				var shards []*dmsv1.ShardStatus
				for _, s := range resp.GetShards() {
					if s.GetReplication().GetUnderReplicated() || s.GetReplication().GetOffline() {
						shards = append(shards, s)
					}
				}
				resp.Shards = shards
			}
			return a.show(resp, func(t *tabwriter.Writer) {
				row(t, "Cluster:", resp.GetClusterId(), "controller:", orDash(resp.GetController()),
					"under-replicated:", resp.GetUnderReplicatedCount(), "offline:", resp.GetOfflineCount())
				fmt.Fprintln(t)
				row(t, "NODE", "ALIVE", "ZONE", "ROLES", "GRPC", "HTTP", "LEADS", "REPLICAS")
				for _, n := range resp.GetNodes() {
					name := n.GetName()
					if n.GetController() {
						name += " *"
					}
					row(t, name, n.GetAlive(), orDash(n.GetZone()), orDash(strings.Join(n.GetRoles(), ",")), orDash(n.GetGrpcAddress()), orDash(n.GetHttpAddress()),
						n.GetLeaderCount(), n.GetReplicaCount())
				}
				fmt.Fprintln(t)
				row(t, "QUEUE", "PARTITION", "LEADER", "EPOCH", "REPLICAS", "ISR", "STATE", "START", "HIGH WATERMARK")
				for _, p := range resp.GetPartitions() {
					r := p.GetReplication()
					hw := fmt.Sprint(p.GetHighWatermark())
					if p.GetError() != "" {
						hw = "? " + p.GetError()
					}
					row(t, p.GetQueueDisplayName(), p.GetPartition(), orDash(r.GetLeader()), r.GetLeaderEpoch(), strings.Join(r.GetReplicas(), ","),
						strings.Join(r.GetIsr(), ","), replicationState(r), p.GetStartOffset(), hw)
				}
				if len(resp.GetShards()) > 0 {
					fmt.Fprintln(t)
					row(t, "SHARD", "OWNER", "LEADER", "EPOCH", "REPLICAS", "ISR", "STATE")
					for _, s := range resp.GetShards() {
						r := s.GetReplication()
						row(t, fmt.Sprintf("%s/%d", s.GetKind(), s.GetShard()), orDash(s.GetOwner()), orDash(r.GetLeader()), r.GetLeaderEpoch(),
							strings.Join(r.GetReplicas(), ","), strings.Join(r.GetIsr(), ","), replicationState(r))
					}
				}
			})
		},
	}
	status.Flags().StringVar(&queue, "queue", "", "only this queue's partitions")
	status.Flags().BoolVar(&underReplicated, "under-replicated", false, "only partitions and shards that are under-replicated or offline")
	cmd.AddCommand(status)
	return cmd
}

func replicationState(r *dmsv1.ReplicaSetStatus) string {
	switch {
	case r.GetOffline():
		return "OFFLINE"
	case r.GetUnderReplicated():
		return "under-replicated"
	case len(r.GetTarget()) > 0:
		return "reassigning"
	}
	return "ok"
}
