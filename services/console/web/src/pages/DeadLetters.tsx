import { Alert, App, Button, Card, DatePicker, Form, Popconfirm, Select, Space, Table, Tag, Typography } from "antd";
import { useEffect, useState } from "react";
import { api, num, ReceivedMessage, RedriveResult } from "../api";
import { MessageTable } from "../components/MessageTable";
import { Err, errText } from "../components/Err";
import { QueueGroupPicker, useSelection } from "../components/Pickers";
import { useProject } from "../project";

// inspect lists a group's dead letters without receiving them
// (ListDeadLetters): nothing is hidden or settled by looking.
async function inspect(project: string, queue: string, group: string, filters: Record<string, unknown>): Promise<ReceivedMessage[]> {
  return (await api.listDeadLetters(project, queue, group, { limit: 1000, ...filters })).messages ?? [];
}

export function DeadLettersPage() {
  const project = useProject();
  const { message } = App.useApp();
  const { queue, group } = useSelection();
  const [letters, setLetters] = useState<ReceivedMessage[]>([]);
  const [selected, setSelected] = useState<string[]>([]);
  const [results, setResults] = useState<RedriveResult[]>([]);
  const [available, setAvailable] = useState<number | undefined>();
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const [filters, setFilters] = useState<Record<string, unknown>>({});
  const load = async () => {
    if (!queue || !group) return;
    setError(null);
    try {
      const [g, got] = await Promise.all([
        api.listGroups(project, queue).then((gs) => gs.find((x) => x.displayName === group)),
        inspect(project, queue, group, filters),
      ]);
      setAvailable(num(g?.stats?.availableDeadLetters));
      setLetters(got);
      setSelected([]);
    } catch (e) {
      setError(e);
    }
  };
  useEffect(() => {
    setLetters([]);
    setResults([]);
    load();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [project, queue, group, filters]);
  const redrive = async (ids: string[]) => {
    setBusy(true);
    setError(null);
    try {
      const r = await api.redrive(project, queue, group, ids);
      setResults(r);
      message.info(`${r.filter((x) => x.redriven).length} of ${r.length} redriven`);
      await load();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  return (
    <>
      <Card size="small" title="Dead letters" style={{ marginBottom: 16 }} extra={<QueueGroupPicker />}>
        <Err error={error} />
        {!queue || !group ? (
          <Alert type="info" message="Choose a queue and a consumer group." />
        ) : (
          <>
            <Space style={{ marginBottom: 12 }}>
              <Typography.Text>
                Dead letters available: <b data-testid="dead-available">{available ?? "…"}</b>
              </Typography.Text>
              <Button onClick={load} data-testid="dead-reload">
                Reload
              </Button>
              <Button type="primary" disabled={!selected.length} loading={busy} data-testid="redrive-selected" onClick={() => redrive(selected)}>
                Redrive selected ({selected.length})
              </Button>
              <Popconfirm title="Redrive every dead letter of this group?" onConfirm={() => redrive([])}>
                <Button loading={busy} data-testid="redrive-all">
                  Redrive all
                </Button>
              </Popconfirm>
              <Popconfirm
                title="Delete the selected dead letters? They are gone for good."
                onConfirm={async () => {
                  try {
                    const handles = (await api.receiveDeadLetters(project, queue, group, 1000))
                      .filter((m) => selected.includes(m.messageId))
                      .map((m) => m.receiptHandle);
                    const r = handles.length ? await api.ackDeadLetters(project, queue, group, handles) : [];
                    message.info(`${r.filter((x) => x.applied).length} deleted`);
                  } catch (e) {
                    message.error(errText(e));
                  }
                  load();
                }}
              >
                <Button danger disabled={!selected.length}>
                  Delete selected
                </Button>
              </Popconfirm>
            </Space>
            <Form
              layout="inline"
              style={{ marginBottom: 12, rowGap: 8 }}
              onFinish={(v) =>
                setFilters({
                  "tagFilter.tags": v.tags ?? [],
                  attributes: v.attributes ?? [],
                  messageIds: v.ids ?? [],
                  failureReason: v.reason ?? "",
                  startTime: v.range?.[0]?.toDate().toISOString(),
                  endTime: v.range?.[1]?.toDate().toISOString(),
                })
              }
            >
              <Form.Item name="reason" label="Last failure">
                <Select
                  allowClear
                  style={{ width: 200 }}
                  options={["FAILED_BY_CONSUMER", "VISIBILITY_TIMEOUT", "REDELIVER_REQUESTED"].map((r) => ({ value: r, label: r }))}
                />
              </Form.Item>
              <Form.Item name="tags" label="Tags">
                <Select mode="tags" style={{ minWidth: 120 }} maxCount={3} />
              </Form.Item>
              <Form.Item name="attributes" label="Attributes">
                <Select mode="tags" style={{ minWidth: 140 }} placeholder="name=value" />
              </Form.Item>
              <Form.Item name="ids" label="Ids">
                <Select mode="tags" style={{ minWidth: 140 }} />
              </Form.Item>
              <Form.Item name="range" label="Dead since">
                <DatePicker.RangePicker showTime allowEmpty={[true, true]} />
              </Form.Item>
              <Button htmlType="submit">Filter</Button>
            </Form>
            <MessageTable queue={queue} messages={letters} testid="dead-letters" dead selection={{ selected, onChange: setSelected }} />
          </>
        )}
      </Card>
      {results.length > 0 && (
        <Card size="small" title="Redrive results">
          <Table
            data-testid="redrive-results"
            size="small"
            rowKey="messageId"
            dataSource={results}
            pagination={false}
            columns={[
              { title: "Message id", render: (_, r) => <Typography.Text code>{r.messageId}</Typography.Text> },
              {
                title: "Result",
                render: (_, r) => (r.redriven ? <Tag color="green">redriven</Tag> : <Tag color="red">{r.errorReason}</Tag>),
              },
              { title: "Detail", dataIndex: "errorMessage" },
            ]}
          />
        </Card>
      )}
    </>
  );
}
