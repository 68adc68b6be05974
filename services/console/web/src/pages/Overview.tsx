import { PlusOutlined } from "@ant-design/icons";
import { App, Button, Card, Checkbox, Col, Form, Input, InputNumber, Modal, Row, Select, Statistic, Table, Tag, Typography } from "antd";
import { useEffect, useState } from "react";
import { Link, useNavigate } from "react-router-dom";
import { api, ConsumerGroup, num, Queue } from "../api";
import { Err, errText } from "../components/Err";
import { fmtRate, rate, rateSeries, Sample, useSampler } from "../components/sampler";
import { TimeChart } from "../components/TimeChart";
import { useProject } from "../project";

export interface QueueSample {
  queue: Queue;
  groups: ConsumerGroup[];
}

// Groups are read for the first 50 queues: rates and lag need them, and a
// console refreshing every 2 s should not cost the server more than that.
const MAX_QUEUES_WITH_GROUPS = 50;

async function sampleProject(project: string): Promise<Record<string, QueueSample>> {
  const { queues = [] } = await api.listQueues(project);
  const out: Record<string, QueueSample> = {};
  await Promise.all(
    queues.map(async (q, i) => {
      const groups = i < MAX_QUEUES_WITH_GROUPS ? await api.listGroups(project, q.id).catch(() => []) : [];
      out[q.displayName] = { queue: q, groups };
    }),
  );
  return out;
}

const sum = (gs: ConsumerGroup[], f: (g: ConsumerGroup) => string | undefined) => gs.reduce((n, g) => n + num(f(g)), 0);
const consumed = (s: QueueSample | undefined) => (s ? sum(s.groups, (g) => g.stats?.consumedMessages) : undefined);
const lag = (s: QueueSample | undefined) => (s ? sum(s.groups, (g) => g.stats?.availableMessages) : undefined);
const deadLetters = (s: QueueSample | undefined) => (s ? sum(s.groups, (g) => g.stats?.availableDeadLetters) : undefined);
// Messages sent: the retained count only grows with sends (retention takes
// whole segments, which shows as a drop that rate() ignores).
const produced = (s: QueueSample | undefined) => (s ? num(s.queue.messageCount) + num(s.queue.scheduledMessageCount) : undefined);

export const modeLabel = (m: string) => (m || "QUEUE_MODE_NORMAL").replace("QUEUE_MODE_", "").replace("UNSPECIFIED", "NORMAL");

function total(samples: Sample<Record<string, QueueSample>>[], f: (s: QueueSample | undefined) => number | undefined) {
  return samples.map((s) => ({ t: s.t, v: Object.values(s.v).reduce((n, q) => n + (f(q) ?? 0), 0) }));
}

export function OverviewPage() {
  const project = useProject();
  const nav = useNavigate();
  const { samples, latest, error, refresh } = useSampler(() => sampleProject(project), 2000, [project]);
  const [creating, setCreating] = useState(false);
  const [quotas, setQuotas] = useState<Awaited<ReturnType<typeof api.quotas>> | null>(null);
  // The project's quotas, shown beside what it uses; a caller who may not
  // read them sees no limit.
  useEffect(() => {
    api.quotas(project).then(setQuotas, () => setQuotas(null));
  }, [project, Object.keys(latest ?? {}).length]);
  const rows = Object.values(latest ?? {}).map((s) => {
    const name = s.queue.displayName;
    const of = (f: (s: QueueSample | undefined) => number | undefined) => (v: Record<string, QueueSample>) => f(v[name]);
    return {
      key: s.queue.id,
      s,
      inRate: rate(samples, of(produced)),
      outRate: rate(samples, of(consumed)),
      lag: lag(s) ?? 0,
      dead: deadLetters(s) ?? 0,
    };
  });
  const produceTotal = total(samples, produced);
  const consumeTotal = total(samples, consumed);
  const backlogTotal = total(samples, lag);
  const latestBacklog = backlogTotal.length ? backlogTotal[backlogTotal.length - 1].v : 0;
  return (
    <>
      <Err error={error} />
      <Row gutter={16} className="stat-row" style={{ marginBottom: 16 }}>
        <Col span={6}>
          <Card>
            <Statistic
              title="Queues"
              value={rows.length}
              suffix={quotas?.quotas?.maxQueues ? `/ ${quotas.quotas.maxQueues}` : undefined}
              data-testid="stat-queues"
            />
            {quotas?.quotas && (
              <Typography.Text type="secondary" data-testid="quotas">
                {quotas.quotas.maxGroupsPerQueue} groups a queue
                {num(quotas.quotas.sendMessagesPerSecond) ? `, ${num(quotas.quotas.sendMessagesPerSecond)} msg/s` : ""}
                {num(quotas.quotas.maxStoredBytes) ? `, ${(num(quotas.quotas.maxStoredBytes) / (1 << 30)).toFixed(1)} GiB stored` : ""}
              </Typography.Text>
            )}
          </Card>
        </Col>
        <Col span={6}>
          <Card>
            <Statistic title="Sent" value={fmtRate(rate(produceTotal.map((x) => ({ t: x.t, v: x.v })), (v) => v))} />
          </Card>
        </Col>
        <Col span={6}>
          <Card>
            <Statistic title="Acknowledged" value={fmtRate(rate(consumeTotal, (v) => v))} />
          </Card>
        </Col>
        <Col span={6}>
          <Card>
            <Statistic title="Backlog (unacked, all groups)" value={latestBacklog} />
          </Card>
        </Col>
      </Row>
      <Row gutter={16} style={{ marginBottom: 16 }}>
        <Col span={12}>
          <Card title="Rates (sampled every 2 s)" size="small">
            <TimeChart
              testid="chart-rates"
              unit="msg/s"
              series={[
                { name: "sent", points: rateSeries(produceTotal, (v) => v) },
                { name: "acked", points: rateSeries(consumeTotal, (v) => v) },
              ]}
            />
          </Card>
        </Col>
        <Col span={12}>
          <Card title="Backlog" size="small">
            <TimeChart
              testid="chart-backlog"
              unit="messages"
              series={Object.keys(latest ?? {}).map((name) => ({
                name,
                points: samples.map((s) => [s.t, lag(s.v[name]) ?? 0] as [number, number]),
              }))}
            />
          </Card>
        </Col>
      </Row>
      <Card
        title="Queues"
        size="small"
        extra={
          <Button type="primary" icon={<PlusOutlined />} data-testid="create-queue" onClick={() => setCreating(true)}>
            Create queue
          </Button>
        }
      >
        <Table
          data-testid="queues"
          size="small"
          pagination={false}
          dataSource={rows}
          onRow={(r) => ({ onDoubleClick: () => nav(`/queues/${r.s.queue.displayName}`) })}
          columns={[
            {
              title: "Queue",
              render: (_, r) => <Link to={`/queues/${encodeURIComponent(r.s.queue.displayName)}`}>{r.s.queue.displayName}</Link>,
            },
            { title: "Mode", render: (_, r) => <Tag>{modeLabel(r.s.queue.mode)}</Tag> },
            { title: "Partitions", render: (_, r) => r.s.queue.partitionCount },
            { title: "Messages", render: (_, r) => num(r.s.queue.messageCount) },
            { title: "Scheduled", render: (_, r) => num(r.s.queue.scheduledMessageCount) },
            { title: "Groups", render: (_, r) => r.s.queue.groupCount },
            { title: "Backlog", dataIndex: "lag" },
            { title: "In", render: (_, r) => fmtRate(r.inRate) },
            { title: "Out", render: (_, r) => fmtRate(r.outRate) },
            {
              title: "Dead letters",
              render: (_, r) => (r.dead > 0 ? <Tag color="red">{r.dead}</Tag> : r.s.queue.deadLetterEnabled ? 0 : "off"),
            },
          ]}
        />
      </Card>
      <CreateQueue
        open={creating}
        onClose={() => setCreating(false)}
        onCreated={(q) => {
          setCreating(false);
          refresh();
          nav(`/queues/${encodeURIComponent(q.displayName)}`);
        }}
      />
    </>
  );
}

function CreateQueue({ open, onClose, onCreated }: { open: boolean; onClose: () => void; onCreated: (q: Queue) => void }) {
  const project = useProject();
  const { message } = App.useApp();
  const [form] = Form.useForm();
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  return (
    <Modal
      title="Create queue"
      open={open}
      onCancel={onClose}
      okText="Create"
      okButtonProps={{ loading: busy, "data-testid": "create-queue-ok" } as any}
      onOk={() => form.submit()}
      destroyOnHidden
    >
      <Err error={error} />
      <Form
        form={form}
        layout="vertical"
        initialValues={{ mode: "QUEUE_MODE_NORMAL", partitionCount: 3, deadLetterEnabled: true, maxConsumeCount: 3, group: "default" }}
        onFinish={async (v) => {
          setBusy(true);
          setError(null);
          try {
            const q = await api.createQueue(project, {
              displayName: v.displayName,
              description: v.description ?? "",
              mode: v.mode,
              partitionCount: v.mode === "QUEUE_MODE_FIFO" ? 1 : v.partitionCount,
              deadLetterEnabled: v.deadLetterEnabled,
              maxConsumeCount: v.deadLetterEnabled ? v.maxConsumeCount : 0,
            });
            if (v.group) await api.createGroup(project, q.id, v.group);
            message.success(`Queue ${q.displayName} created`);
            onCreated(q);
          } catch (e) {
            setError(errText(e));
          } finally {
            setBusy(false);
          }
        }}
      >
        <Form.Item label="Name" name="displayName" rules={[{ required: true, pattern: /^[A-Za-z0-9_-]{1,64}$/, message: "1 to 64 characters of A-Z a-z 0-9 _ -" }]}>
          <Input data-testid="queue-name" />
        </Form.Item>
        <Form.Item label="Description" name="description">
          <Input />
        </Form.Item>
        <Form.Item label="Mode" name="mode">
          <Select
            options={["NORMAL", "FIFO", "KAFKA_HA", "KAFKA_HT", "AMQP"].map((m) => ({ value: `QUEUE_MODE_${m}`, label: m }))}
          />
        </Form.Item>
        <Form.Item label="Partitions" name="partitionCount">
          <InputNumber min={1} max={64} />
        </Form.Item>
        <Form.Item name="deadLetterEnabled" valuePropName="checked">
          <Checkbox data-testid="queue-dlq">Keep dead letters</Checkbox>
        </Form.Item>
        <Form.Item label="Failures before a message becomes a dead letter" name="maxConsumeCount">
          <InputNumber min={1} max={100} data-testid="queue-max-consume" />
        </Form.Item>
        <Form.Item label="Consumer group to create with it (optional)" name="group">
          <Input data-testid="queue-group" />
        </Form.Item>
      </Form>
    </Modal>
  );
}
