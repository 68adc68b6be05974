package dms

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/loadtest/bench"
)

// Config says which dmsd the DMS drivers use.
type Config struct {
	// GRPCAddr and HTTPAddr name a running dmsd; when GRPCAddr is empty the
	// driver starts its own through Launcher for each run.
	GRPCAddr string
	HTTPAddr string
	// KafkaAddr is the Kafka listener of the dmsd named by GRPCAddr (for
	// dms-kafka).
	KafkaAddr string
	// AMQPAddr is the AMQP listener of the dmsd named by GRPCAddr (for
	// dms-amqp).
	AMQPAddr string
	// PID is the running dmsd's process id, for its CPU and RSS; 0 if unknown.
	PID int
	// Project owns the benchmark queues.
	Project string
	// Launcher starts dmsd when no address is given.
	Launcher *Launcher
	// ReplicationFactor of the benchmark queues; 0 takes the cluster's
	// default.
	ReplicationFactor int
}

// maxMessageBytes bounds a gRPC message both ways: 1000 messages of 16 KiB
// and their framing.
const maxMessageBytes = 64 << 20

func dial(addr string) (*grpc.ClientConn, error) {
	return grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMessageBytes), grpc.MaxCallSendMsgSize(maxMessageBytes)))
}

var queueSeq atomic.Int64

// target is what both DMS drivers set up: a dmsd (started or given), a queue
// with the workload's partitions and durability, and one consumer group.
type target struct {
	cfg      Config
	server   *Server
	grpcAddr string
	httpAddr string
	admin    *grpc.ClientConn
	queue    *dmsv1.Queue
	group    *dmsv1.ConsumerGroup
	wait     time.Duration // the workload's ReceiveWait
}

func (t *target) setup(ctx context.Context, w bench.Workload) (bench.SetupInfo, error) {
	var info bench.SetupInfo
	t.wait = w.ReceiveWait
	t.grpcAddr, t.httpAddr, info.ServerPID = t.cfg.GRPCAddr, t.cfg.HTTPAddr, t.cfg.PID
	if t.grpcAddr == "" {
		if t.cfg.Launcher == nil {
			return info, errors.New("no dmsd address and no launcher")
		}
		server, err := t.cfg.Launcher.Start(ctx)
		if err != nil {
			return info, err
		}
		t.server = server
		t.grpcAddr, t.httpAddr, info.ServerPID = server.GRPCAddr, server.HTTPAddr, server.PID
		info.Notes = append(info.Notes, "fresh dmsd (all roles, embedded etcd) on 127.0.0.1, data in a temp dir")
	}
	conn, err := dial(t.grpcAddr)
	if err != nil {
		return info, err
	}
	t.admin = conn
	mode := dmsv1.QueueMode_QUEUE_MODE_NORMAL
	info.Durability = "fsync before ack (NORMAL queue: group commit, one fsync per batch of sends)"
	if w.Durability == bench.Async {
		mode = dmsv1.QueueMode_QUEUE_MODE_KAFKA_HT
		info.Durability = "ack before fsync (KAFKA_HT queue: flushed every 200 ms by default)"
	}
	queues := dmsv1.NewQueueServiceClient(conn)
	name := "bench-" + strconv.FormatInt(time.Now().UnixMilli(), 36) + "-" + strconv.FormatInt(queueSeq.Add(1), 10)
	created, err := queues.CreateQueue(ctx, &dmsv1.CreateQueueRequest{
		Parent: "projects/" + t.cfg.Project,
		Queue:  &dmsv1.Queue{DisplayName: name, Mode: mode, PartitionCount: int32(w.Partitions), ReplicationFactor: int32(t.cfg.ReplicationFactor)},
	})
	if err != nil {
		return info, fmt.Errorf("creating queue %s: %w", name, err)
	}
	t.queue = created.GetQueue()
	group, err := queues.CreateConsumerGroup(ctx, &dmsv1.CreateConsumerGroupRequest{
		Parent: t.queue.GetName(),
		Group:  &dmsv1.ConsumerGroup{DisplayName: "bench"},
	})
	if err != nil {
		return info, fmt.Errorf("creating consumer group: %w", err)
	}
	t.group = group.GetGroup()
	info.Notes = append(info.Notes, fmt.Sprintf("queue %s with %d partitions, replication factor %d", t.queue.GetMode(), t.queue.GetPartitionCount(), t.queue.GetReplicationFactor()))
	return info, nil
}

// SkipBacklog implements bench.BacklogSkipper for every DMS driver: the
// consumer group seeks to after the latest message of every partition.
func (t *target) SkipBacklog(ctx context.Context) error {
	_, err := dmsv1.NewConsumerServiceClient(t.admin).SeekConsumerGroup(ctx, &dmsv1.SeekConsumerGroupRequest{
		Group:  t.group.GetName(),
		Target: &dmsv1.SeekConsumerGroupRequest_Position{Position: dmsv1.SeekPosition_SEEK_POSITION_LATEST},
	})
	return err
}

func (t *target) teardown(ctx context.Context) error {
	var errs []error
	if t.admin != nil {
		// A dmsd of our own goes away with its data; on a given one the
		// queue is deleted so that runs do not eat the project's quota.
		if t.queue != nil && t.server == nil {
			_, err := dmsv1.NewQueueServiceClient(t.admin).DeleteQueue(ctx, &dmsv1.DeleteQueueRequest{Name: t.queue.GetName()})
			errs = append(errs, err)
		}
		errs = append(errs, t.admin.Close())
	}
	if t.server != nil {
		errs = append(errs, t.server.Stop())
	}
	*t = target{cfg: t.cfg}
	return errors.Join(errs...)
}
