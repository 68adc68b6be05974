import { Alert, Button, Card, DatePicker, Form, InputNumber, Radio, Select, Space, Typography } from "antd";
import { useEffect, useState } from "react";
import { api, notOffered, PartitionRange, Queue, ReceivedMessage } from "../api";
import { Err } from "../components/Err";
import { MessageTable } from "../components/MessageTable";
import { QueueGroupPicker, useSelection } from "../components/Pickers";
import { useProject } from "../project";

type From = "offset" | "time";

// BrowserPage reads a queue's messages without consuming them
// (BrowseMessages): no group's position or counts change. It starts at an
// offset or a time, in some or all partitions, filtered by tag, attribute
// or id, a page at a time.
export function BrowserPage() {
  const project = useProject();
  const { queue } = useSelection();
  const [q, setQ] = useState<Queue | null>(null);
  const [form] = Form.useForm();
  const [from, setFrom] = useState<From>("offset");
  const [messages, setMessages] = useState<ReceivedMessage[]>([]);
  const [ranges, setRanges] = useState<PartitionRange[]>([]);
  const [next, setNext] = useState("");
  const [filters, setFilters] = useState<Record<string, unknown>>({});
  const [error, setError] = useState<unknown>(null);
  const [missing, setMissing] = useState(false);
  const [busy, setBusy] = useState(false);

  const browse = async (f: Record<string, unknown>, pageToken = "") => {
    setBusy(true);
    setError(null);
    try {
      const r = await api.browse(project, queue, { ...f, pageToken });
      setMessages((old) => (pageToken ? [...old, ...(r.messages ?? [])] : (r.messages ?? [])));
      setRanges(r.partitions ?? []);
      setNext(r.nextPageToken);
    } catch (e) {
      if (notOffered(e)) setMissing(true);
      else setError(e);
    } finally {
      setBusy(false);
    }
  };
  useEffect(() => {
    setMessages([]);
    setNext("");
    setQ(null);
    if (!queue) return;
    api.getQueue(project, queue).then(setQ, setError);
    browse({ limit: 100 });
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [project, queue]);

  const submit = (v: any) => {
    const f: Record<string, unknown> = {
      partitions: v.partitions ?? [],
      limit: v.limit ?? 100,
      "tagFilter.tags": v.tags ?? [],
      "tagFilter.match": v.tags?.length ? v.match : "",
      attributes: v.attributes ?? [],
      messageIds: v.ids ?? [],
    };
    if (from === "offset") f.offset = v.offset ?? 0;
    else if (v.range?.[0]) f.startTime = v.range[0].toDate().toISOString();
    if (from === "time" && v.range?.[1]) f.endTime = v.range[1].toDate().toISOString();
    setFilters(f);
    browse(f);
  };

  return (
    <Card size="small" title="Message browser" extra={<QueueGroupPicker withGroup={false} />}>
      <Err error={error} />
      {missing ? (
        <Alert type="info" message="This server does not offer BrowseMessages." />
      ) : !queue ? (
        <Alert type="info" message="Choose a queue. Browsing reads messages without consuming them: no consumer group sees a change." />
      ) : (
        <>
          <Form form={form} layout="inline" onFinish={submit} initialValues={{ match: "TAG_MATCH_ANY", limit: 100 }} style={{ marginBottom: 12, rowGap: 8 }}>
            <Form.Item>
              <Radio.Group value={from} onChange={(e) => setFrom(e.target.value)} optionType="button">
                <Radio value="offset">From offset</Radio>
                <Radio value="time">By time</Radio>
              </Radio.Group>
            </Form.Item>
            {from === "offset" ? (
              <Form.Item name="offset" label="Offset">
                <InputNumber min={0} data-testid="browse-offset" />
              </Form.Item>
            ) : (
              <Form.Item name="range">
                <DatePicker.RangePicker showTime allowEmpty={[false, true]} />
              </Form.Item>
            )}
            <Form.Item name="partitions" label="Partitions">
              <Select
                mode="multiple"
                allowClear
                placeholder="all"
                style={{ minWidth: 120 }}
                options={Array.from({ length: q?.partitionCount ?? 0 }, (_, p) => ({ value: p, label: `p${p}` }))}
              />
            </Form.Item>
            <Form.Item name="tags" label="Tags">
              <Select mode="tags" style={{ minWidth: 140 }} maxCount={3} data-testid="browse-tags" />
            </Form.Item>
            <Form.Item name="match">
              <Select style={{ width: 90 }} options={[{ value: "TAG_MATCH_ANY", label: "any" }, { value: "TAG_MATCH_ALL", label: "all" }]} />
            </Form.Item>
            <Form.Item name="attributes" label="Attributes">
              <Select mode="tags" style={{ minWidth: 160 }} placeholder="name=value" data-testid="browse-attributes" />
            </Form.Item>
            <Form.Item name="ids" label="Ids">
              <Select mode="tags" style={{ minWidth: 160 }} />
            </Form.Item>
            <Form.Item name="limit" label="Limit">
              <InputNumber min={1} max={1000} />
            </Form.Item>
            <Button type="primary" htmlType="submit" loading={busy} data-testid="browse">
              Browse
            </Button>
          </Form>
          {ranges.length > 0 && (
            <Space wrap style={{ marginBottom: 8 }} data-testid="browse-ranges">
              {ranges.map((r) => (
                <Typography.Text key={r.partition} type="secondary">
                  p{r.partition}: {Number(r.endOffset) > Number(r.startOffset) ? `offsets ${r.startOffset}–${Number(r.endOffset) - 1}` : "empty"}
                </Typography.Text>
              ))}
            </Space>
          )}
          <MessageTable queue={queue} messages={messages} testid="browse-messages" />
          {next && (
            <Button style={{ marginTop: 8 }} onClick={() => browse(filters, next)} loading={busy} data-testid="browse-more">
              More
            </Button>
          )}
        </>
      )}
    </Card>
  );
}
