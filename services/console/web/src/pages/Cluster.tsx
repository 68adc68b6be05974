import { Alert, Card, Table } from "antd";
import { Queue } from "../api";

// ClusterPage shows the nodes; it waits for the public GetClusterStatus API.
export function ClusterPage() {
  return (
    <Card size="small" title="Cluster">
      <Alert type="info" message="Cluster status needs the GetClusterStatus API, which this server does not offer yet." />
    </Card>
  );
}

// PartitionsCard lists a queue's partitions.
export function PartitionsCard({ queue }: { queue: Queue }) {
  const rows = Array.from({ length: queue.partitionCount }, (_, p) => ({ partition: p }));
  return (
    <Card size="small" title="Partitions" style={{ marginBottom: 16 }}>
      <Table size="small" rowKey="partition" pagination={false} dataSource={rows} columns={[{ title: "Partition", dataIndex: "partition" }]} />
    </Card>
  );
}
