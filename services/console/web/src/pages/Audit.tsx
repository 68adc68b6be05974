import { Alert, Button, Card, DatePicker, Form, Input, Space, Table, Tag, Typography } from "antd";
import { useEffect, useState } from "react";
import { api, AuditRecord } from "../api";
import { Err } from "../components/Err";

export function AuditPage() {
  const [records, setRecords] = useState<AuditRecord[]>([]);
  const [next, setNext] = useState("");
  const [filters, setFilters] = useState<Record<string, string>>({});
  const [error, setError] = useState<unknown>(null);
  const [verify, setVerify] = useState<Awaited<ReturnType<typeof api.verifyAudit>> | null>(null);
  const load = async (f: Record<string, string>, token = "") => {
    setError(null);
    try {
      const r = await api.listAudit({ ...f, pageSize: "100", pageToken: token });
      setRecords((old) => (token ? [...old, ...(r.records ?? [])] : (r.records ?? [])));
      setNext(r.nextPageToken);
    } catch (e) {
      setError(e);
    }
  };
  useEffect(() => {
    load({});
  }, []);
  return (
    <Card size="small" title="Audit log">
      <Err error={error} />
      <Form
        layout="inline"
        style={{ marginBottom: 12 }}
        onFinish={(v) => {
          const f: Record<string, string> = {
            action: v.action ?? "",
            principal: v.principal ?? "",
            resource: v.resource ?? "",
            startTime: v.range?.[0]?.toDate().toISOString() ?? "",
            endTime: v.range?.[1]?.toDate().toISOString() ?? "",
          };
          setFilters(f);
          load(f);
        }}
      >
        <Form.Item name="action">
          <Input placeholder="action (CreateQueue)" data-testid="audit-action" />
        </Form.Item>
        <Form.Item name="principal">
          <Input placeholder="principal (user:…)" />
        </Form.Item>
        <Form.Item name="resource">
          <Input placeholder="resource (projects/p/queues/q)" />
        </Form.Item>
        <Form.Item name="range">
          <DatePicker.RangePicker showTime />
        </Form.Item>
        <Button htmlType="submit" type="primary" data-testid="audit-search">
          Search
        </Button>
        <Button
          style={{ marginLeft: 8 }}
          data-testid="audit-verify"
          onClick={async () => {
            try {
              setVerify(await api.verifyAudit());
            } catch (e) {
              setError(e);
            }
          }}
        >
          Verify chain
        </Button>
      </Form>
      {verify && (
        <Alert
          data-testid="audit-verify-result"
          style={{ marginBottom: 12 }}
          type={verify.intact ? "success" : "error"}
          message={
            verify.intact
              ? `Intact: ${verify.recordsChecked} records checked from offset ${verify.firstOffset}`
              : `Broken at offset ${verify.firstBrokenOffset}: ${verify.brokenReason}`
          }
        />
      )}
      <Table
        data-testid="audit-records"
        size="small"
        rowKey="offset"
        dataSource={records}
        pagination={false}
        expandable={{
          expandedRowRender: (r) => (
            <pre className="body-pre">{JSON.stringify({ ...r, parameters: safeJSON(r.parameters) }, null, 2)}</pre>
          ),
        }}
        columns={[
          { title: "Time", render: (_, r) => new Date(r.time).toLocaleString() },
          { title: "Principal", dataIndex: "principal" },
          { title: "Action", render: (_, r) => <Typography.Text code>{r.action.replace(/^\/dms\.v1\./, "")}</Typography.Text> },
          { title: "Resource", dataIndex: "resource" },
          { title: "Result", render: (_, r) => (r.allowed ? <Tag color="green">{r.code}</Tag> : <Tag color="red">{r.reason || r.code}</Tag>) },
          { title: "Decided by", dataIndex: "decidedBy" },
          { title: "Source", dataIndex: "sourceAddress" },
          { title: "Node", dataIndex: "node" },
        ]}
      />
      {next && (
        <Space style={{ marginTop: 12 }}>
          <Button onClick={() => load(filters, next)}>More</Button>
        </Space>
      )}
    </Card>
  );
}

function safeJSON(s: string): unknown {
  try {
    return JSON.parse(s);
  } catch {
    return s;
  }
}
