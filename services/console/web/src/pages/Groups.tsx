import { Alert, App, Button, Card, DatePicker, Descriptions, InputNumber, Popconfirm, Radio, Space, Table, Typography } from "antd";
import { useEffect, useState } from "react";
import { api, ConsumerGroup, durationSeconds, num, Queue } from "../api";
import { Err, errText } from "../components/Err";
import { QueueGroupPicker, useSelection } from "../components/Pickers";
import { fmtDuration, useSampler } from "../components/sampler";
import { TimeChart } from "../components/TimeChart";
import { useProject } from "../project";
import { timeToDrain } from "./QueueDetail";

type SeekKind = "earliest" | "latest" | "time" | "offsets";

export function GroupsPage() {
  const project = useProject();
  const { queue, group, set } = useSelection();
  const { message } = App.useApp();
  const { samples, latest, error, refresh } = useSampler(
    async () => {
      if (!queue) return undefined;
      const [q, groups] = await Promise.all([api.getQueue(project, queue), api.listGroups(project, queue)]);
      return { queue: q, groups };
    },
    2000,
    [project, queue],
  );
  const g = latest?.groups.find((x) => x.displayName === group);
  return (
    <>
      <Card size="small" title="Consumer groups" extra={<QueueGroupPicker withGroup={false} />} style={{ marginBottom: 16 }}>
        <Err error={error} />
        {!queue ? (
          <Alert type="info" message="Choose a queue." />
        ) : (
          <Table<ConsumerGroup>
            data-testid="group-list"
            size="small"
            rowKey="id"
            pagination={false}
            dataSource={latest?.groups ?? []}
            rowClassName={(x) => (x.displayName === group ? "ant-table-row-selected" : "")}
            onRow={(x) => ({ onClick: () => set(queue, x.displayName), style: { cursor: "pointer" } })}
            columns={[
              { title: "Group", dataIndex: "displayName" },
              { title: "Id", dataIndex: "id" },
              { title: "Lag", render: (_, x) => num(x.stats?.availableMessages) },
              { title: "In flight", render: (_, x) => num(x.stats?.inFlightMessages) },
              { title: "Acked", render: (_, x) => num(x.stats?.consumedMessages) },
              { title: "Dead letters", render: (_, x) => num(x.stats?.availableDeadLetters) },
              { title: "Time to drain", render: (_, x) => (samples.length && latest ? timeToDrain(samples as any, x.displayName) : "…") },
              { title: "Created", render: (_, x) => new Date(x.createTime).toLocaleString() },
            ]}
          />
        )}
      </Card>
      {g && latest && (
        <Card
          size="small"
          title={`Group ${g.displayName}`}
          extra={
            <Popconfirm
              title={`Delete group ${g.displayName} and its consumption state?`}
              onConfirm={async () => {
                try {
                  await api.deleteGroup(project, queue, g.id);
                  set(queue, "");
                  refresh();
                } catch (e) {
                  message.error(errText(e));
                }
              }}
            >
              <Button danger>Delete group</Button>
            </Popconfirm>
          }
        >
          <Descriptions size="small" column={4} style={{ marginBottom: 12 }}>
            <Descriptions.Item label="Lag">{num(g.stats?.availableMessages)}</Descriptions.Item>
            <Descriptions.Item label="Oldest unacked">
              {durationSeconds(g.stats?.oldestUnackedAge) ? fmtDuration(durationSeconds(g.stats?.oldestUnackedAge)) : "—"}
            </Descriptions.Item>
            <Descriptions.Item label="Time to drain">{timeToDrain(samples as any, g.displayName)}</Descriptions.Item>
            <Descriptions.Item label="Lost (damaged on disk)">{num(g.stats?.lostMessages)}</Descriptions.Item>
          </Descriptions>
          <TimeChart
            testid="chart-group-lag"
            unit="messages"
            series={[
              {
                name: "lag",
                points: samples.map((s) => [s.t, num(s.v?.groups.find((x) => x.id === g.id)?.stats?.availableMessages)] as [number, number]),
              },
              {
                name: "in flight",
                points: samples.map((s) => [s.t, num(s.v?.groups.find((x) => x.id === g.id)?.stats?.inFlightMessages)] as [number, number]),
              },
            ]}
          />
          <SeekForm queue={latest.queue} group={g} onDone={refresh} />
        </Card>
      )}
    </>
  );
}

function SeekForm({ queue, group, onDone }: { queue: Queue; group: ConsumerGroup; onDone: () => void }) {
  const project = useProject();
  const [kind, setKind] = useState<SeekKind>("earliest");
  const [time, setTime] = useState<any>(null);
  const [offsets, setOffsets] = useState<Record<number, number>>({});
  const [positions, setPositions] = useState<{ partition: number; offset: string }[]>([]);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => setPositions([]), [group.id]);
  const seek = async () => {
    setError(null);
    let target: unknown;
    if (kind === "earliest") target = { position: "SEEK_POSITION_EARLIEST" };
    else if (kind === "latest") target = { position: "SEEK_POSITION_LATEST" };
    else if (kind === "time") target = { time: time?.toDate().toISOString() };
    else target = { offsets: { offsets: Object.entries(offsets).map(([p, o]) => ({ partition: Number(p), offset: String(o) })) } };
    try {
      setPositions(await api.seek(project, queue.id, group.id, target));
      onDone();
    } catch (e) {
      setError(e);
    }
  };
  return (
    <Card size="small" type="inner" title="Seek / reset" style={{ marginTop: 12 }}>
      <Err error={error} />
      <Typography.Paragraph type="secondary">
        Messages from the new position on are delivered to the group again, even those it acked.
      </Typography.Paragraph>
      <Space direction="vertical">
        <Radio.Group value={kind} onChange={(e) => setKind(e.target.value)} data-testid="seek-kind">
          <Radio value="earliest">Earliest (reset)</Radio>
          <Radio value="latest">Latest (skip everything)</Radio>
          <Radio value="time">To a time</Radio>
          <Radio value="offsets">To offsets</Radio>
        </Radio.Group>
        {kind === "time" && <DatePicker showTime value={time} onChange={setTime} />}
        {kind === "offsets" && (
          <Space wrap>
            {Array.from({ length: queue.partitionCount }, (_, p) => (
              <InputNumber
                key={p}
                addonBefore={`p${p}`}
                min={0}
                placeholder="keep"
                value={offsets[p]}
                onChange={(v) =>
                  setOffsets((o) => {
                    const n = { ...o };
                    if (v === null) delete n[p];
                    else n[p] = v;
                    return n;
                  })
                }
              />
            ))}
          </Space>
        )}
        <Popconfirm title={`Move group ${group.displayName}?`} onConfirm={seek}>
          <Button type="primary" data-testid="seek">
            Seek
          </Button>
        </Popconfirm>
      </Space>
      {positions.length > 0 && (
        <Table
          data-testid="seek-positions"
          style={{ marginTop: 12 }}
          size="small"
          rowKey="partition"
          pagination={false}
          dataSource={positions}
          columns={[
            { title: "Partition", dataIndex: "partition" },
            { title: "New position", dataIndex: "offset" },
          ]}
        />
      )}
    </Card>
  );
}
