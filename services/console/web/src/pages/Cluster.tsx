import { Alert, Card, Col, Row, Statistic, Table, Tag, Typography } from "antd";
import { api, ClusterStatus, notOffered, num, PartitionStatus, Queue, ReplicaSetStatus, ShardStatus } from "../api";
import { Err } from "../components/Err";
import { useSampler } from "../components/sampler";

function fmtBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1 << 20) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1 << 30) return `${(n / (1 << 20)).toFixed(1)} MiB`;
  return `${(n / (1 << 30)).toFixed(2)} GiB`;
}

// Replicas shows a replica set: the leader in blue, in-sync replicas in
// green, the others (catching up, or down) in red.
function Replicas({ r }: { r?: ReplicaSetStatus }) {
  if (!r) return null;
  return (
    <>
      {(r.replicas ?? []).map((n) => (
        <Tag key={n} color={n === r.leader ? "blue" : r.isr?.includes(n) ? "green" : "red"}>
          {n}
          {n === r.leader ? " ★" : ""}
        </Tag>
      ))}
      {r.offline && <Tag color="red">offline</Tag>}
      {!r.offline && r.underReplicated && <Tag color="orange">under-replicated</Tag>}
      {r.target?.length ? <Tag color="purple">moving to {r.target.join(", ")}</Tag> : null}
    </>
  );
}

export const partitionColumns = [
  { title: "Partition", dataIndex: "partition" },
  { title: "Leader", render: (_: unknown, p: PartitionStatus) => p.replication?.leader || <Tag color="red">none</Tag> },
  { title: "Epoch", render: (_: unknown, p: PartitionStatus) => p.replication?.leaderEpoch },
  { title: "Replicas (★ leader, green in sync)", render: (_: unknown, p: PartitionStatus) => <Replicas r={p.replication} /> },
  { title: "Offsets", render: (_: unknown, p: PartitionStatus) => `${p.startOffset} – ${p.highWatermark}` },
  { title: "Size", render: (_: unknown, p: PartitionStatus) => fmtBytes(num(p.sizeBytes)) },
  { title: "", render: (_: unknown, p: PartitionStatus) => (p.error ? <Typography.Text type="danger">{p.error}</Typography.Text> : null) },
];

// ClusterPage shows the nodes, every partition's leader and replicas and
// the internal shards (GetClusterStatus), refreshed every 5 s.
export function ClusterPage() {
  const { latest, error } = useSampler<ClusterStatus | null>(
    () => api.clusterStatus().catch((e) => (notOffered(e) ? null : Promise.reject(e))),
    5000,
    [],
    2,
  );
  if (latest === null) return <Alert type="info" message="This server does not offer GetClusterStatus." />;
  const s = latest;
  return (
    <>
      <Err error={error} />
      <Row gutter={16} style={{ marginBottom: 16 }}>
        <Col span={6}>
          <Card>
            <Statistic title="Nodes alive" value={`${s?.nodes?.filter((n) => n.alive).length ?? "…"} / ${s?.nodes?.length ?? "…"}`} />
          </Card>
        </Col>
        <Col span={6}>
          <Card>
            <Statistic title="Controller" value={s?.controller || "none"} />
          </Card>
        </Col>
        <Col span={6}>
          <Card>
            <Statistic title="Under-replicated" value={s?.underReplicatedCount ?? 0} valueStyle={{ color: s?.underReplicatedCount ? "#d46b08" : undefined }} />
          </Card>
        </Col>
        <Col span={6}>
          <Card>
            <Statistic title="Offline" value={s?.offlineCount ?? 0} valueStyle={{ color: s?.offlineCount ? "#cf1322" : undefined }} />
          </Card>
        </Col>
      </Row>
      <Card size="small" title="Nodes" style={{ marginBottom: 16 }}>
        <Table
          data-testid="cluster-nodes"
          size="small"
          rowKey="name"
          pagination={false}
          dataSource={s?.nodes ?? []}
          columns={[
            { title: "Node", render: (_, n) => <b>{n.name}</b> },
            { title: "State", render: (_, n) => (n.alive ? <Tag color="green">alive</Tag> : <Tag color="red">down</Tag>) },
            { title: "Zone", dataIndex: "zone" },
            { title: "Roles", render: (_, n) => (n.roles ?? []).map((r) => <Tag key={r}>{r}</Tag>) },
            { title: "Leads", dataIndex: "leaderCount" },
            { title: "Replicas", dataIndex: "replicaCount" },
            { title: "gRPC", dataIndex: "grpcAddress" },
            { title: "HTTP", dataIndex: "httpAddress" },
            { title: "Kafka", dataIndex: "kafkaAddress" },
            { title: "Started", render: (_, n) => (n.startTime ? new Date(n.startTime).toLocaleString() : "") },
            { title: "", render: (_, n) => (n.controller ? <Tag color="gold">controller</Tag> : null) },
          ]}
        />
      </Card>
      <Card size="small" title="Partitions" style={{ marginBottom: 16 }}>
        <Table
          data-testid="cluster-partitions"
          size="small"
          rowKey={(p) => `${p.queue}/${p.partition}`}
          pagination={{ pageSize: 20, hideOnSinglePage: true }}
          dataSource={s?.partitions ?? []}
          columns={[{ title: "Queue", render: (_: unknown, p: PartitionStatus) => p.queueDisplayName }, ...partitionColumns]}
        />
      </Card>
      <Card size="small" title="Internal shards (consumer state, dead letters, timers)">
        <Table
          size="small"
          rowKey={(x) => `${x.kind}/${x.shard}`}
          pagination={{ pageSize: 20, hideOnSinglePage: true }}
          dataSource={s?.shards ?? []}
          columns={[
            { title: "Kind", dataIndex: "kind" },
            { title: "Shard", dataIndex: "shard" },
            { title: "Owner", render: (_: unknown, x: ShardStatus) => `${x.owner} (epoch ${x.ownerEpoch})` },
            { title: "Replicas", render: (_: unknown, x: ShardStatus) => <Replicas r={x.replication} /> },
          ]}
        />
      </Card>
    </>
  );
}

// PartitionsCard lists a queue's partitions with their leaders, replicas
// and offsets; with authentication on only the operator's administrators
// may read them, and others see the partition numbers alone.
export function PartitionsCard({ queue }: { queue: Queue }) {
  const { latest, error } = useSampler(() => api.clusterStatus(queue.name), 5000, [queue.name], 2);
  const rows: PartitionStatus[] =
    latest?.partitions ??
    Array.from({ length: queue.partitionCount }, (_, p) => ({
      queue: queue.name,
      queueDisplayName: queue.displayName,
      partition: p,
      startOffset: "",
      highWatermark: "",
      sizeBytes: "0",
      error: "",
    }));
  return (
    <Card size="small" title="Partitions" style={{ marginBottom: 16 }}>
      {error && !latest ? <Typography.Paragraph type="secondary">Leaders and replicas are not shown: {String(error)}</Typography.Paragraph> : null}
      <Table data-testid="partitions" size="small" rowKey="partition" pagination={false} dataSource={rows} columns={partitionColumns} />
    </Card>
  );
}
