import { Alert, Button, Card, DatePicker, Descriptions, Empty, Form, Input, Radio, Space, Tag, Timeline, Typography } from "antd";
import { useEffect, useState } from "react";
import { api, MessageTrace, MessageTraceEvent, notOffered } from "../api";
import { Err } from "../components/Err";
import { QueueGroupPicker, useSelection } from "../components/Pickers";
import { useProject } from "../project";

type By = "id" | "key" | "time";

const eventColor: Record<string, string> = {
  PRODUCED: "blue",
  SCHEDULED: "blue",
  DELIVERED: "cyan",
  DEAD_LETTER_DELIVERED: "cyan",
  ACKED: "green",
  DEAD_LETTER_ACKED: "green",
  FAILED: "red",
  VISIBILITY_TIMEOUT: "orange",
  REDELIVER_REQUESTED: "orange",
  DEAD_LETTERED: "red",
  REDRIVEN: "purple",
  SEEK: "gray",
  SKIPPED: "gray",
  HISTORY_TRIMMED: "gray",
  VISIBILITY_EXTENDED: "gray",
};

const statusColor: Record<string, string> = {
  PENDING: "default",
  IN_FLIGHT: "processing",
  RETRYING: "warning",
  ACKED: "success",
  DEAD_LETTERED: "error",
};

const short = (t: string, prefix: string) => (t || "").replace(prefix, "");

function eventLine(e: MessageTraceEvent, groups: Record<string, string>) {
  const type = short(e.type, "MESSAGE_TRACE_EVENT_TYPE_");
  const parts: string[] = [];
  if (e.group) parts.push(`group ${groups[e.group] ?? e.group.split("/").pop()}`);
  if (e.consumer) parts.push(`by ${e.consumer}`);
  if (e.deliveryCount) parts.push(`delivery #${e.deliveryCount}`);
  if (e.reason) parts.push(e.reason);
  if (e.availableTime) parts.push(`until ${new Date(e.availableTime).toLocaleTimeString()}`);
  if (e.detail) parts.push(e.detail);
  return (
    <>
      <Typography.Text strong>{type}</Typography.Text>{" "}
      <Typography.Text type="secondary">{new Date(e.time).toLocaleString()}</Typography.Text>
      <div>{parts.join(" · ")}</div>
    </>
  );
}

function TraceView({ trace }: { trace: MessageTrace }) {
  const groups = Object.fromEntries((trace.groups ?? []).map((g) => [g.group, g.displayName]));
  return (
    <Card size="small" type="inner" title={<Typography.Text code>{trace.messageId}</Typography.Text>} style={{ marginBottom: 12 }} data-testid="trace">
      <Descriptions size="small" column={3} style={{ marginBottom: 12 }}>
        <Descriptions.Item label="Stored">
          partition {trace.partition}, offset {trace.offset}, {new Date(trace.publishTime).toLocaleString()}
        </Descriptions.Item>
        <Descriptions.Item label="Produced by">
          {trace.producer || "—"} {trace.frontEnd && <Tag>{trace.frontEnd}</Tag>}
        </Descriptions.Item>
        <Descriptions.Item label="Replicas">
          {(trace.storage?.replicas ?? []).map((r) => (
            <Tag key={r} color={r === trace.storage?.leader ? "blue" : trace.storage?.inSyncReplicas?.includes(r) ? "green" : "default"}>
              {r}
              {r === trace.storage?.leader ? " (leader)" : ""}
            </Tag>
          ))}
          {trace.storage?.committed ? <Tag color="green">committed</Tag> : <Tag>not committed</Tag>}
          {trace.storage?.deleted && <Tag color="volcano">deleted by retention</Tag>}
        </Descriptions.Item>
        {trace.orderingKey && <Descriptions.Item label="Ordering key">{trace.orderingKey}</Descriptions.Item>}
        {trace.tags?.length ? <Descriptions.Item label="Tags">{trace.tags.map((t) => <Tag key={t}>{t}</Tag>)}</Descriptions.Item> : null}
        {trace.traceContext?.traceId && (
          <Descriptions.Item label="Trace id">
            <Typography.Text code copyable>
              {trace.traceContext.traceId}
            </Typography.Text>
          </Descriptions.Item>
        )}
      </Descriptions>
      <Space wrap style={{ marginBottom: 12 }} data-testid="trace-groups">
        {(trace.groups ?? []).map((g) => (
          <Tag key={g.group} color={statusColor[short(g.status, "GROUP_TRACE_STATUS_")]}>
            {g.displayName}: {short(g.status, "GROUP_TRACE_STATUS_")}
            {g.deliveryCount ? `, ${g.deliveryCount} deliveries` : ""}
          </Tag>
        ))}
      </Space>
      <div data-testid="trace-events">
        <Timeline
          items={(trace.events ?? []).map((e, i) => ({
            key: i,
            color: eventColor[short(e.type, "MESSAGE_TRACE_EVENT_TYPE_")] ?? "gray",
            children: eventLine(e, groups),
          }))}
        />
      </div>
    </Card>
  );
}

// TracePage shows the life of a message (GetMessageTrace): produced,
// stored, every delivery and outcome in every group, dead letters, redrive.
// It finds messages by id, by ordering key, or by a time range.
export function TracePage() {
  const project = useProject();
  const { queue, group, params } = useSelection();
  const [by, setBy] = useState<By>("id");
  const [form] = Form.useForm();
  const [traces, setTraces] = useState<MessageTrace[] | null>(null);
  const [truncated, setTruncated] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [missing, setMissing] = useState(false);
  const [busy, setBusy] = useState(false);
  const run = async (f: Record<string, unknown>) => {
    if (!queue) return;
    setBusy(true);
    setError(null);
    try {
      const r = await api.trace(project, queue, { ...f, group });
      setTraces(r.traces ?? []);
      setTruncated(r.truncated);
    } catch (e) {
      if (notOffered(e)) setMissing(true);
      else setError(e);
      setTraces(null);
    } finally {
      setBusy(false);
    }
  };
  const id = params.get("id") ?? "";
  useEffect(() => {
    form.setFieldsValue({ id });
    if (id && queue) run({ messageId: id });
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [project, queue, id, group]);
  return (
    <Card size="small" title="Message trace" extra={<QueueGroupPicker />}>
      <Err error={error} />
      {missing ? (
        <Alert type="info" message="This server does not offer GetMessageTrace." />
      ) : !queue ? (
        <Alert type="info" message="Choose a queue (and a group, to see that group's events only)." />
      ) : (
        <>
          <Form
            form={form}
            layout="inline"
            style={{ marginBottom: 12, rowGap: 8 }}
            onFinish={(v) => {
              if (by === "id") run({ messageId: v.id });
              else if (by === "key")
                run({ orderingKey: v.key, startTime: v.range?.[0]?.toDate().toISOString(), endTime: v.range?.[1]?.toDate().toISOString() });
              else run({ startTime: v.range?.[0]?.toDate().toISOString(), endTime: v.range?.[1]?.toDate().toISOString() });
            }}
          >
            <Form.Item>
              <Radio.Group value={by} onChange={(e) => setBy(e.target.value)} optionType="button">
                <Radio value="id">Message id</Radio>
                <Radio value="key">Ordering key</Radio>
                <Radio value="time">Time range</Radio>
              </Radio.Group>
            </Form.Item>
            {by === "id" && (
              <Form.Item name="id" rules={[{ required: true }]}>
                <Input style={{ width: 340 }} placeholder="message id" data-testid="trace-id" />
              </Form.Item>
            )}
            {by === "key" && (
              <Form.Item name="key" rules={[{ required: true }]}>
                <Input style={{ width: 240 }} placeholder="ordering key" />
              </Form.Item>
            )}
            {by !== "id" && (
              <Form.Item name="range" rules={[{ required: by === "time" }]}>
                <DatePicker.RangePicker showTime allowEmpty={[by === "key", true]} />
              </Form.Item>
            )}
            <Button type="primary" htmlType="submit" loading={busy} data-testid="trace-go">
              Trace
            </Button>
          </Form>
          {traces && traces.length === 0 && <Empty description="No message found" />}
          {truncated && <Alert type="warning" message="More messages matched than are shown." style={{ marginBottom: 12 }} />}
          {traces?.map((t) => <TraceView key={t.messageId} trace={t} />)}
        </>
      )}
    </Card>
  );
}
