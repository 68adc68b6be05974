import { App, Button, Card, Checkbox, Col, Descriptions, Form, Input, InputNumber, Modal, Popconfirm, Row, Select, Space, Table, Tag, Typography } from "antd";
import { useState } from "react";
import { Link, useNavigate, useParams } from "react-router-dom";
import { api, attrText, ConsumerGroup, durationSeconds, notOffered, num, Queue, ReceivedMessage, SendResult, textToB64 } from "../api";
import { Body } from "../components/Body";
import { Err, errText } from "../components/Err";
import { fmtDuration, fmtRate, rate, rateSeries, Sample, useSampler } from "../components/sampler";
import { TimeChart } from "../components/TimeChart";
import { PartitionsCard } from "./Cluster";
import { useProject } from "../project";
import { modeLabel } from "./Overview";

interface QueueState {
  queue: Queue;
  groups: ConsumerGroup[];
}

// timeToDrain: at the acked rate less the sent rate seen over the samples
// of the last minute, how long until the group has no backlog.
export function timeToDrain(samples: Sample<QueueState>[], group: string): string {
  const recent = samples.filter((s) => s.t >= Date.now() - 60_000);
  if (recent.length < 2) return "…";
  const first = recent[0];
  const last = recent[recent.length - 1];
  const g0 = first.v.groups.find((g) => g.displayName === group);
  const g1 = last.v.groups.find((g) => g.displayName === group);
  if (!g0 || !g1) return "…";
  const backlog = num(g1.stats?.availableMessages);
  if (backlog === 0) return "drained";
  const dt = (last.t - first.t) / 1000;
  const drainRate = (num(g0.stats?.availableMessages) - backlog) / dt;
  if (drainRate <= 0) return "not draining";
  return fmtDuration(backlog / drainRate);
}

export function QueueDetailPage() {
  const project = useProject();
  const nav = useNavigate();
  const { message } = App.useApp();
  const queueName = useParams().queue!;
  const { samples, latest, error, refresh } = useSampler(
    async (): Promise<QueueState> => {
      const [queue, groups] = await Promise.all([api.getQueue(project, queueName), api.listGroups(project, queueName)]);
      return { queue, groups };
    },
    2000,
    [project, queueName],
  );
  const q = latest?.queue;
  if (!q) return <Err error={error} />;
  const groupNames = latest.groups.map((g) => g.displayName);
  return (
    <>
      <Err error={error} />
      <Card
        size="small"
        title={
          <Space>
            <Typography.Title level={4} style={{ margin: 0 }} data-testid="queue-title">
              {q.displayName}
            </Typography.Title>
            <Tag>{modeLabel(q.mode)}</Tag>
          </Space>
        }
        extra={
          <Space>
            <QueueSettings queue={q} onChange={refresh} />
            <Popconfirm
              title={`Delete queue ${q.displayName} with all its messages?`}
              onConfirm={async () => {
                try {
                  await api.deleteQueue(project, q.id);
                  nav("/");
                } catch (e) {
                  message.error(errText(e));
                }
              }}
            >
              <Button danger>Delete queue</Button>
            </Popconfirm>
          </Space>
        }
        style={{ marginBottom: 16 }}
      >
        <Descriptions size="small" column={4}>
          <Descriptions.Item label="Browse">
            <Link to={`/messages?queue=${encodeURIComponent(q.displayName)}`}>messages</Link>
          </Descriptions.Item>
          <Descriptions.Item label="Id">{q.id}</Descriptions.Item>
          <Descriptions.Item label="Messages">
            <span data-testid="queue-messages">{num(q.messageCount)}</span>
          </Descriptions.Item>
          <Descriptions.Item label="Partitions">{q.partitionCount}</Descriptions.Item>
          <Descriptions.Item label="Replication factor">{q.replicationFactor || "cluster default"}</Descriptions.Item>
          <Descriptions.Item label="Retention">{fmtDuration(durationSeconds(q.retention))}</Descriptions.Item>
          <Descriptions.Item label="Dead letters">
            {q.deadLetterEnabled ? `after ${q.maxConsumeCount} failures` : "off"}
          </Descriptions.Item>
          <Descriptions.Item label="Max message">{(q.maxMessageBytes / 1024).toFixed(0)} KiB</Descriptions.Item>
          <Descriptions.Item label="Created">{new Date(q.createTime).toLocaleString()}</Descriptions.Item>
          {q.description && (
            <Descriptions.Item label="Description">
              <span data-testid="queue-description">{q.description}</span>
            </Descriptions.Item>
          )}
        </Descriptions>
      </Card>
      <Row gutter={16} style={{ marginBottom: 16 }}>
        <Col span={12}>
          <Card size="small" title="Lag per group (sampled every 2 s)">
            <TimeChart
              testid="chart-lag"
              unit="messages"
              series={groupNames.map((g) => ({
                name: g,
                points: samples.map((s) => [s.t, num(s.v.groups.find((x) => x.displayName === g)?.stats?.availableMessages)] as [number, number]),
              }))}
            />
          </Card>
        </Col>
        <Col span={12}>
          <Card size="small" title="Acked per second, per group">
            <TimeChart
              testid="chart-acked"
              unit="msg/s"
              series={groupNames.map((g) => ({
                name: g,
                points: rateSeries(samples, (v) => {
                  const x = v.groups.find((y) => y.displayName === g);
                  return x ? num(x.stats?.consumedMessages) : undefined;
                }),
              }))}
            />
          </Card>
        </Col>
      </Row>
      <GroupsCard queue={q} groups={latest.groups} samples={samples} onChange={refresh} />
      <PartitionsCard queue={q} />
      <Row gutter={16}>
        <Col span={9}>
          <SendCard queue={q} onSent={refresh} />
          <ScheduledCard queue={q} onChange={refresh} />
        </Col>
        <Col span={15}>
          <ReceiveCard queue={q} groups={groupNames} onChange={refresh} />
        </Col>
      </Row>
    </>
  );
}

// QueueSettings changes what may change while a queue is in use
// (UpdateQueue) and raises its partition count (AddPartitions).
function QueueSettings({ queue, onChange }: { queue: Queue; onChange: () => void }) {
  const project = useProject();
  const { message } = App.useApp();
  const [open, setOpen] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [form] = Form.useForm();
  return (
    <>
      <Button onClick={() => setOpen(true)} data-testid="queue-settings">
        Settings
      </Button>
      <Modal
        title={`Settings of ${queue.displayName}`}
        open={open}
        onCancel={() => setOpen(false)}
        onOk={() => form.submit()}
        okText="Save"
        destroyOnHidden
      >
        <Err error={error} />
        <Form
          form={form}
          layout="vertical"
          initialValues={{
            description: queue.description,
            retentionHours: Math.round(durationSeconds(queue.retention) / 3600),
            deadLetterEnabled: queue.deadLetterEnabled,
            maxConsumeCount: queue.maxConsumeCount || 3,
            partitionCount: queue.partitionCount,
          }}
          onFinish={async (v) => {
            setError(null);
            try {
              const changes: Partial<Queue> = {};
              if (v.description !== queue.description) changes.description = v.description ?? "";
              if (v.retentionHours * 3600 !== Math.round(durationSeconds(queue.retention))) changes.retention = `${v.retentionHours * 3600}s`;
              if (v.deadLetterEnabled !== queue.deadLetterEnabled) changes.deadLetterEnabled = v.deadLetterEnabled;
              if (v.deadLetterEnabled && v.maxConsumeCount !== queue.maxConsumeCount) changes.maxConsumeCount = v.maxConsumeCount;
              if (Object.keys(changes).length) await api.updateQueue(queue, changes);
              if (v.partitionCount > queue.partitionCount) await api.addPartitions(project, queue.id, v.partitionCount);
              message.success("Saved");
              setOpen(false);
              onChange();
            } catch (e) {
              setError(notOffered(e) ? "This server does not offer UpdateQueue." : e);
            }
          }}
        >
          <Form.Item label="Description" name="description">
            <Input maxLength={160} data-testid="settings-description" />
          </Form.Item>
          <Form.Item label="Retention (hours, at most 72)" name="retentionHours">
            <InputNumber min={1} max={72} />
          </Form.Item>
          <Form.Item name="deadLetterEnabled" valuePropName="checked">
            <Checkbox>Keep dead letters</Checkbox>
          </Form.Item>
          <Form.Item label="Failures before a message becomes a dead letter" name="maxConsumeCount">
            <InputNumber min={1} max={100} />
          </Form.Item>
          <Form.Item label="Partitions (can only grow; keys keep their partition)" name="partitionCount">
            <InputNumber min={queue.partitionCount} max={64} disabled={queue.mode === "QUEUE_MODE_FIFO"} data-testid="settings-partitions" />
          </Form.Item>
        </Form>
      </Modal>
    </>
  );
}

function GroupsCard({ queue, groups, samples, onChange }: { queue: Queue; groups: ConsumerGroup[]; samples: Sample<QueueState>[]; onChange: () => void }) {
  const project = useProject();
  const { message } = App.useApp();
  const [name, setName] = useState("");
  return (
    <Card
      size="small"
      title="Consumer groups"
      style={{ marginBottom: 16 }}
      extra={
        <Space.Compact>
          <Input placeholder="new group" value={name} onChange={(e) => setName(e.target.value)} data-testid="new-group" />
          <Button
            data-testid="create-group"
            onClick={async () => {
              try {
                await api.createGroup(project, queue.id, name);
                setName("");
                onChange();
              } catch (e) {
                message.error(errText(e));
              }
            }}
          >
            Create group
          </Button>
        </Space.Compact>
      }
    >
      <Table
        data-testid="groups"
        size="small"
        pagination={false}
        rowKey="id"
        dataSource={groups}
        columns={[
          {
            title: "Group",
            render: (_, g) => (
              <Link to={`/groups?queue=${encodeURIComponent(queue.displayName)}&group=${encodeURIComponent(g.displayName)}`}>{g.displayName}</Link>
            ),
          },
          { title: "Lag", render: (_, g) => num(g.stats?.availableMessages) },
          { title: "In flight", render: (_, g) => num(g.stats?.inFlightMessages) },
          { title: "Acked", render: (_, g) => num(g.stats?.consumedMessages) },
          {
            title: "Ack rate",
            render: (_, g) =>
              fmtRate(
                rate(samples, (v) => {
                  const x = v.groups.find((y) => y.id === g.id);
                  return x ? num(x.stats?.consumedMessages) : undefined;
                }),
              ),
          },
          { title: "Oldest unacked", render: (_, g) => (num(durationSeconds(g.stats?.oldestUnackedAge)) ? fmtDuration(durationSeconds(g.stats?.oldestUnackedAge)) : "—") },
          { title: "Time to drain", render: (_, g) => timeToDrain(samples, g.displayName) },
          {
            title: "Dead letters",
            render: (_, g) =>
              num(g.stats?.availableDeadLetters) > 0 ? (
                <Link to={`/deadletters?queue=${encodeURIComponent(queue.displayName)}&group=${encodeURIComponent(g.displayName)}`}>
                  <Tag color="red" data-testid={`dead-${g.displayName}`}>
                    {num(g.stats?.availableDeadLetters)}
                  </Tag>
                </Link>
              ) : (
                0
              ),
          },
          { title: "Tag filter", render: (_, g) => g.tagFilter?.tags?.map((t) => <Tag key={t}>{t}</Tag>) },
          { title: "Lost", render: (_, g) => (num(g.stats?.lostMessages) ? <Tag color="volcano">{num(g.stats?.lostMessages)}</Tag> : 0) },
        ]}
      />
    </Card>
  );
}

// parseAttributes reads `name=value` lines; numbers and booleans keep their
// type.
function parseAttributes(text: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const line of text.split("\n")) {
    const i = line.indexOf("=");
    if (i <= 0) continue;
    const k = line.slice(0, i).trim();
    const v = line.slice(i + 1).trim();
    if (/^-?\d+$/.test(v)) out[k] = { intValue: v };
    else if (/^-?\d*\.\d+$/.test(v)) out[k] = { doubleValue: Number(v) };
    else if (v === "true" || v === "false") out[k] = { boolValue: v === "true" };
    else out[k] = { stringValue: v };
  }
  return out;
}

function SendCard({ queue, onSent }: { queue: Queue; onSent: () => void }) {
  const project = useProject();
  const [results, setResults] = useState<SendResult[]>([]);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const [form] = Form.useForm();
  return (
    <Card size="small" title="Send a message" style={{ marginBottom: 16 }}>
      <Err error={error} />
      {/* No submit button: Enter in a field (adding a tag) must not send. */}
      <Form
        form={form}
        layout="vertical"
        initialValues={{ count: 1 }}
        onFinish={async (v) => {
          setBusy(true);
          setError(null);
          try {
            const m: Record<string, unknown> = {
              body: textToB64(v.body ?? ""),
              attributes: parseAttributes(v.attributes ?? ""),
              tags: (v.tags ?? []).filter(Boolean),
            };
            if (v.orderingKey) m.orderingKey = v.orderingKey;
            if (v.delay) m.delay = `${v.delay}s`;
            setResults(await api.send(project, queue.id, Array.from({ length: v.count }, () => m)));
            onSent();
          } catch (e) {
            setError(e);
          } finally {
            setBusy(false);
          }
        }}
      >
        <Form.Item label="Body" name="body">
          <Input.TextArea rows={3} data-testid="send-body" placeholder='{"order": 42}' />
        </Form.Item>
        <Row gutter={8}>
          <Col span={12}>
            <Form.Item label="Tags" name="tags">
              <Select mode="tags" data-testid="send-tags" tokenSeparators={[",", " "]} maxCount={3} />
            </Form.Item>
          </Col>
          <Col span={12}>
            <Form.Item label="Ordering key" name="orderingKey">
              <Input />
            </Form.Item>
          </Col>
        </Row>
        <Form.Item label="Attributes (name=value, one a line)" name="attributes">
          <Input.TextArea rows={2} data-testid="send-attributes" placeholder="region=eu" />
        </Form.Item>
        <Space>
          <Form.Item label="Delay (s)" name="delay">
            <InputNumber min={0} max={604800} data-testid="send-delay" />
          </Form.Item>
          <Form.Item label="Copies" name="count">
            <InputNumber min={1} max={1000} />
          </Form.Item>
        </Space>
        <Button type="primary" htmlType="button" onClick={() => form.submit()} loading={busy} data-testid="send">
          Send
        </Button>
      </Form>
      {results.length > 0 && (
        <Table
          data-testid="send-results"
          style={{ marginTop: 12 }}
          size="small"
          pagination={{ pageSize: 5 }}
          rowKey={(r) => r.messageId}
          dataSource={results}
          columns={[
            { title: "Message id", render: (_, r) => <Link to={`/trace?queue=${encodeURIComponent(queue.displayName)}&id=${r.messageId}`}><Typography.Text code copyable>{r.messageId}</Typography.Text></Link> },
            { title: "Partition", dataIndex: "partition" },
            { title: "Offset", dataIndex: "offset" },
            {
              title: "Scheduled",
              render: (_, r) =>
                r.scheduleId ? (
                  <>
                    {new Date(r.deliverTime!).toLocaleString()} <Typography.Text code copyable data-testid="schedule-id">{r.scheduleId}</Typography.Text>
                  </>
                ) : (
                  ""
                ),
            },
          ]}
        />
      )}
    </Card>
  );
}

function ScheduledCard({ queue, onChange }: { queue: Queue; onChange: () => void }) {
  const project = useProject();
  const { message } = App.useApp();
  const [ids, setIds] = useState("");
  return (
    <Card size="small" title="Scheduled messages" style={{ marginBottom: 16 }}>
      <Descriptions size="small" column={2}>
        <Descriptions.Item label="Pending">
          <span data-testid="scheduled-count">{num(queue.scheduledMessageCount)}</span>
        </Descriptions.Item>
        <Descriptions.Item label="Next due">{queue.nextScheduledTime ? new Date(queue.nextScheduledTime).toLocaleString() : "—"}</Descriptions.Item>
      </Descriptions>
      <Space.Compact style={{ width: "100%" }}>
        <Input placeholder="schedule ids to cancel, comma-separated" value={ids} onChange={(e) => setIds(e.target.value)} data-testid="cancel-ids" />
        <Button
          data-testid="cancel-scheduled"
          onClick={async () => {
            try {
              const results = await api.cancelScheduled(project, queue.id, ids.split(/[,\s]+/).filter(Boolean));
              const bad = results.filter((r) => !r.cancelled);
              if (bad.length) message.warning(bad.map((r) => `${r.scheduleId}: ${r.errorReason}`).join("; "));
              else message.success(`${results.length} cancelled`);
              setIds("");
              onChange();
            } catch (e) {
              message.error(errText(e));
            }
          }}
        >
          Cancel
        </Button>
      </Space.Compact>
    </Card>
  );
}

// ReceiveCard is a consumer in the browser: it receives for a group and
// settles each message by hand, which is how an operator tries a queue out
// (and how a message is failed into the dead letters on purpose).
function ReceiveCard({ queue, groups, onChange }: { queue: Queue; groups: string[]; onChange: () => void }) {
  const project = useProject();
  const [group, setGroup] = useState<string | undefined>();
  const [max, setMax] = useState(10);
  const [msgs, setMsgs] = useState<ReceivedMessage[]>([]);
  const [settled, setSettled] = useState<Record<string, string>>({});
  const [error, setError] = useState<unknown>(null);
  const g = group ?? groups[0];
  const settle = async (m: ReceivedMessage, status: string) => {
    try {
      const [r] = await api.ack(project, queue.id, g, [{ receiptHandle: m.receiptHandle, status }]);
      setSettled((s) => ({ ...s, [m.receiptHandle]: r.applied ? status.replace("ACK_STATUS_", "").toLowerCase() : r.errorReason }));
      onChange();
    } catch (e) {
      setError(e);
    }
  };
  return (
    <Card size="small" title="Receive (as a consumer of a group)" style={{ marginBottom: 16 }}>
      <Err error={error} />
      <Space style={{ marginBottom: 12 }}>
        <Select data-testid="receive-group" style={{ width: 200 }} value={g} onChange={setGroup} options={groups.map((x) => ({ value: x, label: x }))} />
        <InputNumber min={1} max={100} value={max} onChange={(v) => setMax(v ?? 10)} />
        <Button
          data-testid="receive"
          disabled={!g}
          onClick={async () => {
            setError(null);
            try {
              setMsgs(await api.receive(project, queue.id, g, max));
              setSettled({});
              onChange();
            } catch (e) {
              setError(e);
            }
          }}
        >
          Receive
        </Button>
      </Space>
      <Table
        data-testid="received"
        size="small"
        scroll={{ x: "max-content" }}
        rowKey="receiptHandle"
        pagination={false}
        dataSource={msgs}
        locale={{ emptyText: "Nothing received" }}
        expandable={{ expandedRowRender: (m) => <Body b64={m.message?.body ?? ""} /> }}
        columns={[
          { title: "Message", render: (_, m) => <Typography.Text code>{m.messageId.slice(0, 13)}…</Typography.Text> },
          { title: "P/offset", render: (_, m) => `${m.partition}/${m.offset}` },
          { title: "Body", render: (_, m) => <Body b64={m.message?.body ?? ""} compact /> },
          { title: "Deliveries", dataIndex: "deliveryCount" },
          { title: "Tags", render: (_, m) => m.message?.tags?.map((t) => <Tag key={t}>{t}</Tag>) },
          {
            title: "Attributes",
            render: (_, m) =>
              Object.entries(m.message?.attributes ?? {}).map(([k, v]) => (
                <Tag key={k}>
                  {k}={attrText(v)}
                </Tag>
              )),
          },
          {
            title: "Settle",
            render: (_, m) =>
              settled[m.receiptHandle] ? (
                <Tag data-testid="settled">{settled[m.receiptHandle]}</Tag>
              ) : (
                <Space size={4}>
                  <Button size="small" type="primary" data-testid="ack" onClick={() => settle(m, "ACK_STATUS_SUCCESS")}>
                    Ack
                  </Button>
                  <Button size="small" danger data-testid="fail" onClick={() => settle(m, "ACK_STATUS_FAIL")}>
                    Fail
                  </Button>
                  <Button size="small" onClick={() => settle(m, "ACK_STATUS_REDELIVER")}>
                    Later
                  </Button>
                </Space>
              ),
          },
        ]}
      />
    </Card>
  );
}
