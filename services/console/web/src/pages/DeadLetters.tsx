import { Alert, App, Button, Card, Descriptions, Popconfirm, Space, Table, Tag, Typography } from "antd";
import { useEffect, useState } from "react";
import { Link } from "react-router-dom";
import { api, attrText, num, ReceivedMessage, RedriveResult } from "../api";
import { Body } from "../components/Body";
import { Err, errText } from "../components/Err";
import { QueueGroupPicker, useSelection } from "../components/Pickers";
import { useProject } from "../project";

// inspect reads a group's dead letters without settling them: the public
// API hands dead letters out like messages, so they are received with the
// shortest visibility timeout and given straight back (acked as FAIL, which
// makes a dead letter available again at once) — redrive skips dead
// letters that are out with a consumer.
async function inspect(project: string, queue: string, group: string, max: number): Promise<ReceivedMessage[]> {
  const got = await api.receiveDeadLetters(project, queue, group, max);
  if (got.length) await api.releaseDeadLetters(project, queue, group, got.map((m) => m.receiptHandle));
  return got;
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
  const load = async () => {
    if (!queue || !group) return;
    setError(null);
    try {
      const [g, got] = await Promise.all([
        api.listGroups(project, queue).then((gs) => gs.find((x) => x.displayName === group)),
        inspect(project, queue, group, 100),
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
  }, [project, queue, group]);
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
            <Table
              data-testid="dead-letters"
              size="small"
              rowKey="messageId"
              dataSource={letters}
              pagination={{ pageSize: 20 }}
              rowSelection={{ selectedRowKeys: selected, onChange: (k) => setSelected(k as string[]) }}
              expandable={{
                expandedRowRender: (m) => (
                  <>
                    <Descriptions size="small" column={3}>
                      <Descriptions.Item label="Source">
                        partition {m.deadLetter?.sourcePartition}, offset {m.deadLetter?.sourceOffset}
                      </Descriptions.Item>
                      <Descriptions.Item label="Published">{new Date(m.publishTime).toLocaleString()}</Descriptions.Item>
                      <Descriptions.Item label="Ordering key">{m.message?.orderingKey || "—"}</Descriptions.Item>
                    </Descriptions>
                    <Body b64={m.message?.body ?? ""} />
                  </>
                ),
              }}
              columns={[
                {
                  title: "Message id",
                  render: (_, m) => (
                    <Link to={`/trace?queue=${encodeURIComponent(queue)}&id=${m.messageId}`}>
                      <Typography.Text code>{m.messageId}</Typography.Text>
                    </Link>
                  ),
                },
                { title: "Body", render: (_, m) => <Body b64={m.message?.body ?? ""} compact /> },
                { title: "Failures", render: (_, m) => m.deadLetter?.failureCount },
                { title: "Last failure", render: (_, m) => <Tag color="orange">{m.deadLetter?.lastFailureReason}</Tag> },
                { title: "Dead since", render: (_, m) => (m.deadLetter ? new Date(m.deadLetter.deadLetterTime).toLocaleString() : "") },
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
              ]}
            />
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
