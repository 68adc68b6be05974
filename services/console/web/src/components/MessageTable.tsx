import { Descriptions, Table, Tag, Typography } from "antd";
import { Link } from "react-router-dom";
import { attrText, ReceivedMessage } from "../api";
import { Body } from "./Body";

// MessageTable lists messages read without consuming them (browsed, or
// dead letters listed); a row opens to the whole body as text, JSON or hex.
export function MessageTable({
  queue,
  messages,
  testid,
  dead,
  selection,
}: {
  queue: string;
  messages: ReceivedMessage[];
  testid: string;
  dead?: boolean;
  selection?: { selected: string[]; onChange: (ids: string[]) => void };
}) {
  return (
    <Table
      data-testid={testid}
      size="small"
      rowKey={(m) => `${m.partition}/${m.offset}`}
      dataSource={messages}
      pagination={{ pageSize: 25, hideOnSinglePage: true }}
      rowSelection={
        selection && {
          selectedRowKeys: messages.filter((m) => selection.selected.includes(m.messageId)).map((m) => `${m.partition}/${m.offset}`),
          onChange: (_, rows) => selection.onChange(rows.map((r) => r.messageId)),
        }
      }
      expandable={{
        expandedRowRender: (m) => (
          <>
            <Descriptions size="small" column={3}>
              {m.deadLetter ? (
                <Descriptions.Item label="Source">
                  partition {m.deadLetter.sourcePartition}, offset {m.deadLetter.sourceOffset}
                </Descriptions.Item>
              ) : null}
              <Descriptions.Item label="Published">{new Date(m.publishTime).toLocaleString()}</Descriptions.Item>
              <Descriptions.Item label="Ordering key">{m.message?.orderingKey || "—"}</Descriptions.Item>
            </Descriptions>
            <Body b64={m.message?.body ?? ""} />
          </>
        ),
      }}
      columns={[
        ...(dead ? [] : [{ title: "Partition/offset", render: (_: unknown, m: ReceivedMessage) => `${m.partition}/${m.offset}` }]),
        {
          title: "Message id",
          render: (_, m) => (
            <Link to={`/trace?queue=${encodeURIComponent(queue)}&id=${m.messageId}`}>
              <Typography.Text code>{m.messageId}</Typography.Text>
            </Link>
          ),
        },
        { title: dead ? "Published" : "Time", render: (_, m) => new Date(m.publishTime).toLocaleString() },
        { title: "Body", render: (_, m) => <Body b64={m.message?.body ?? ""} compact /> },
        ...(dead
          ? [
              { title: "Failures", render: (_: unknown, m: ReceivedMessage) => m.deadLetter?.failureCount },
              { title: "Last failure", render: (_: unknown, m: ReceivedMessage) => <Tag color="orange">{m.deadLetter?.lastFailureReason}</Tag> },
              {
                title: "Dead since",
                render: (_: unknown, m: ReceivedMessage) => (m.deadLetter ? new Date(m.deadLetter.deadLetterTime).toLocaleString() : ""),
              },
            ]
          : []),
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
  );
}
