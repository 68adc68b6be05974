// The console's only way to the server: the public REST API (grpc-gateway,
// /openapi.json) and, with authentication on, POST /v3/auth/tokens for a
// token that goes back as `authorization: Bearer`.

const TOKEN_KEY = "dms-console-token";
const PROJECT_KEY = "dms-console-project";

// The project dmsd serves by default (-protocols.default-project).
export const DEFAULT_PROJECT = "0123456789abcdef0123456789abcdef";

export function getToken(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(token: string | null) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

export function getProject(): string {
  return localStorage.getItem(PROJECT_KEY) || DEFAULT_PROJECT;
}

export function setProject(p: string) {
  localStorage.setItem(PROJECT_KEY, p);
}

// ApiError carries the server's stable reason (google.rpc.ErrorInfo) beside
// its message, so that pages can show both.
export class ApiError extends Error {
  status: number;
  reason: string;
  constructor(status: number, reason: string, message: string) {
    super(message);
    this.status = status;
    this.reason = reason;
  }
  toString() {
    return this.reason ? `${this.reason}: ${this.message}` : this.message;
  }
}

// Listeners told when a call comes back 401, so that the app shows the
// login page.
const unauthenticated = new Set<() => void>();
export function onUnauthenticated(f: () => void) {
  unauthenticated.add(f);
  return () => {
    unauthenticated.delete(f);
  };
}

export async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = {};
  const token = getToken();
  if (token) headers["authorization"] = `Bearer ${token}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  const res = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let json: any = undefined;
  try {
    json = text ? JSON.parse(text) : {};
  } catch {
    json = undefined;
  }
  if (!res.ok) {
    if (res.status === 401) unauthenticated.forEach((f) => f());
    const info = json?.details?.find((d: any) => typeof d?.reason === "string");
    throw new ApiError(res.status, info?.reason ?? "", json?.message ?? (text || res.statusText));
  }
  return json as T;
}

// login gets a token with the Keystone v3 password method; the token comes
// in the X-Subject-Token header. Without a project it is unscoped, which an
// account's administrator needs for the identity and audit APIs.
export async function login(user: string, password: string, domain: string, project?: string): Promise<string> {
  const auth: any = {
    identity: { methods: ["password"], password: { user: { name: user, password, domain: { name: domain } } } },
  };
  if (project) auth.scope = { project: { id: project } };
  const res = await fetch("/v3/auth/tokens", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ auth }),
  });
  if (!res.ok) {
    let msg = res.statusText;
    try {
      const j = await res.json();
      msg = j?.error?.message ?? j?.message ?? msg;
    } catch {
      /* not JSON */
    }
    throw new ApiError(res.status, "", `${res.status} ${msg}`);
  }
  const token = res.headers.get("x-subject-token");
  if (!token) throw new ApiError(res.status, "", "the server answered without X-Subject-Token");
  return token;
}

// ---- The resources, as the REST API writes them (int64 as strings). ----

export type QueueMode =
  | "QUEUE_MODE_UNSPECIFIED"
  | "QUEUE_MODE_NORMAL"
  | "QUEUE_MODE_FIFO"
  | "QUEUE_MODE_KAFKA_HA"
  | "QUEUE_MODE_KAFKA_HT"
  | "QUEUE_MODE_AMQP";

export interface Queue {
  name: string;
  id: string;
  displayName: string;
  description: string;
  mode: QueueMode;
  partitionCount: number;
  retention: string;
  deadLetterEnabled: boolean;
  maxConsumeCount: number;
  createTime: string;
  messageCount: string;
  groupCount: number;
  maxMessageBytes: number;
  scheduledMessageCount: string;
  nextScheduledTime?: string;
  replicationFactor: number;
}

export interface GroupStats {
  producedMessages: string;
  consumedMessages: string;
  availableMessages: string;
  inFlightMessages: string;
  producedDeadLetters: string;
  availableDeadLetters: string;
  oldestUnackedAge: string;
  lostMessages: string;
}

export interface ConsumerGroup {
  name: string;
  id: string;
  displayName: string;
  createTime: string;
  stats?: GroupStats;
  tagFilter?: { tags: string[]; match: string };
}

export type AttributeValue = { stringValue?: string; intValue?: string; doubleValue?: number; boolValue?: boolean };

export interface Message {
  body: string; // base64
  attributes?: Record<string, AttributeValue>;
  tags?: string[];
  orderingKey?: string;
}

export interface DeadLetterInfo {
  failureCount: number;
  lastFailureReason: string;
  deadLetterTime: string;
  sourcePartition: number;
  sourceOffset: string;
}

export interface ReceivedMessage {
  messageId: string;
  receiptHandle: string;
  message?: Message;
  partition: number;
  offset: string;
  publishTime: string;
  deliveryCount: number;
  deadLetter?: DeadLetterInfo;
}

export interface SendResult {
  messageId: string;
  partition: number;
  offset: string;
  scheduleId: string;
  deliverTime?: string;
}

export interface AckResult {
  applied: boolean;
  errorReason: string;
  errorMessage: string;
}

export interface RedriveResult {
  messageId: string;
  redriven: boolean;
  errorReason: string;
  errorMessage: string;
}

export interface AuditRecord {
  offset: string;
  time: string;
  principal: string;
  authMethod: string;
  sourceAddress: string;
  action: string;
  resource: string;
  parameters: string;
  allowed: boolean;
  code: string;
  reason: string;
  errorMessage: string;
  requestId: string;
  decidedBy: string;
  node: string;
}

export interface PartitionRange {
  partition: number;
  startOffset: string;
  endOffset: string;
  nextOffset: string;
}

export interface ReplicaSetStatus {
  replicas?: string[];
  leader: string;
  leaderEpoch: string;
  isr?: string[];
  minInsync: number;
  underReplicated: boolean;
  offline: boolean;
  target?: string[];
}

export interface ClusterNode {
  name: string;
  zone: string;
  alive: boolean;
  roles?: string[];
  grpcAddress: string;
  httpAddress: string;
  internalGrpcAddress: string;
  kafkaAddress: string;
  startTime?: string;
  controller: boolean;
  leaderCount: number;
  replicaCount: number;
}

export interface PartitionStatus {
  queue: string;
  queueDisplayName: string;
  partition: number;
  replication?: ReplicaSetStatus;
  startOffset: string;
  highWatermark: string;
  sizeBytes: string;
  error: string;
}

export interface ShardStatus {
  kind: string;
  shard: number;
  replication?: ReplicaSetStatus;
  owner: string;
  ownerEpoch: string;
}

export interface ClusterStatus {
  clusterId: string;
  createTime?: string;
  controller: string;
  nodes?: ClusterNode[];
  partitions?: PartitionStatus[];
  shards?: ShardStatus[];
  underReplicatedCount: number;
  offlineCount: number;
}

export interface MessageTraceEvent {
  time: string;
  type: string;
  group: string;
  consumer: string;
  deliveryCount: number;
  reason: string;
  availableTime?: string;
  offset: string;
  detail: string;
}

export interface MessageTrace {
  messageId: string;
  queue: string;
  partition: number;
  offset: string;
  publishTime: string;
  orderingKey: string;
  tags?: string[];
  producer: string;
  frontEnd: string;
  traceContext?: { traceparent: string; traceId: string; spanId: string };
  storage?: { replicas?: string[]; inSyncReplicas?: string[]; leader: string; committed: boolean; deleted: boolean };
  events?: MessageTraceEvent[];
  groups?: { group: string; displayName: string; status: string; deliveryCount: number; historySince?: string }[];
}

// notOffered tells an error of an API this server does not have (yet).
export const notOffered = (e: unknown) => e instanceof ApiError && e.status === 404 && e.message.startsWith("no API serves");

// query writes a request's fields as grpc-gateway reads them from a URL:
// repeated fields repeat, nested ones are dotted, empty ones are left out.
export function query(fields: Record<string, unknown>): string {
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(fields)) {
    if (v === undefined || v === null || v === "") continue;
    if (Array.isArray(v)) v.forEach((x) => qs.append(k, String(x)));
    else qs.append(k, String(v));
  }
  const s = qs.toString();
  return s ? "?" + s : "";
}

// ---- Calls. ----

const enc = encodeURIComponent;
export const projectPath = (p: string) => `/v1/projects/${enc(p)}`;
export const queuePath = (p: string, q: string) => `${projectPath(p)}/queues/${enc(q)}`;
export const groupPath = (p: string, q: string, g: string) => `${queuePath(p, q)}/groups/${enc(g)}`;

export const api = {
  listQueues: (p: string) => call<{ queues?: Queue[]; totalSize: number }>("GET", `${projectPath(p)}/queues`),
  getQueue: (p: string, q: string) => call<{ queue: Queue }>("GET", queuePath(p, q)).then((r) => r.queue),
  createQueue: (p: string, queue: Partial<Queue>) =>
    call<{ queue: Queue }>("POST", `${projectPath(p)}/queues`, queue).then((r) => r.queue),
  // updateQueue sends the fields to change; PATCH without a mask changes
  // the fields the body gives.
  updateQueue: (q: Queue, changes: Partial<Queue>) =>
    call<{ queue: Queue }>("PATCH", `/v1/${q.name}`, changes).then((r) => r.queue),
  addPartitions: (p: string, q: string, partitionCount: number) =>
    call<{ queue: Queue }>("POST", `${queuePath(p, q)}:addPartitions`, { partitionCount }).then((r) => r.queue),
  deleteQueue: (p: string, q: string) => call<{}>("DELETE", queuePath(p, q)),
  listGroups: (p: string, q: string) =>
    call<{ groups?: ConsumerGroup[] }>("GET", `${queuePath(p, q)}/groups`).then((r) => r.groups ?? []),
  createGroup: (p: string, q: string, name: string) =>
    call<{ group: ConsumerGroup }>("POST", `${queuePath(p, q)}/groups`, { displayName: name }).then((r) => r.group),
  deleteGroup: (p: string, q: string, g: string) => call<{}>("DELETE", groupPath(p, q, g)),
  send: (p: string, q: string, messages: unknown[]) =>
    call<{ results: SendResult[] }>("POST", `${queuePath(p, q)}/messages:send`, { messages }).then((r) => r.results),
  receive: (p: string, q: string, g: string, max: number, visibility = "30s") =>
    call<{ messages?: ReceivedMessage[] }>("POST", `${groupPath(p, q, g)}/messages:receive`, {
      maxMessages: max,
      visibilityTimeout: visibility,
    }).then((r) => r.messages ?? []),
  ack: (p: string, q: string, g: string, acks: { receiptHandle: string; status: string }[]) =>
    call<{ results: AckResult[] }>("POST", `${groupPath(p, q, g)}/messages:ack`, { acks }).then((r) => r.results),
  receiveDeadLetters: (p: string, q: string, g: string, max: number, visibility = "15s") =>
    call<{ messages?: ReceivedMessage[] }>("POST", `${groupPath(p, q, g)}/deadLetters:receive`, {
      maxMessages: max,
      visibilityTimeout: visibility,
    }).then((r) => r.messages ?? []),
  ackDeadLetters: (p: string, q: string, g: string, handles: string[]) =>
    call<{ results: AckResult[] }>("POST", `${groupPath(p, q, g)}/deadLetters:ack`, {
      acks: handles.map((h) => ({ receiptHandle: h, status: "ACK_STATUS_SUCCESS" })),
    }).then((r) => r.results),
  redrive: (p: string, q: string, g: string, messageIds: string[]) =>
    call<{ results?: RedriveResult[] }>("POST", `${groupPath(p, q, g)}/deadLetters:redrive`, { messageIds }).then(
      (r) => r.results ?? [],
    ),
  seek: (p: string, q: string, g: string, target: unknown) =>
    call<{ positions?: { partition: number; offset: string }[] }>("POST", `${groupPath(p, q, g)}:seek`, target).then(
      (r) => r.positions ?? [],
    ),
  cancelScheduled: (p: string, q: string, ids: string[]) =>
    call<{ results: { scheduleId: string; cancelled: boolean; errorReason: string; errorMessage: string }[] }>(
      "POST",
      `${queuePath(p, q)}/scheduledMessages:cancel`,
      { scheduleIds: ids },
    ).then((r) => r.results),
  browse: (p: string, q: string, f: Record<string, unknown>) =>
    call<{ messages?: ReceivedMessage[]; nextPageToken: string; partitions?: PartitionRange[] }>(
      "GET",
      `${queuePath(p, q)}/messages:browse${query(f)}`,
    ),
  listDeadLetters: (p: string, q: string, g: string, f: Record<string, unknown>) =>
    call<{ messages?: ReceivedMessage[]; nextPageToken: string }>("GET", `${groupPath(p, q, g)}/deadLetters${query(f)}`),
  clusterStatus: (queue?: string) => call<ClusterStatus>("GET", `/v1/cluster/status${query({ queue })}`),
  trace: (p: string, q: string, f: Record<string, unknown>) =>
    call<{ traces?: MessageTrace[]; truncated: boolean }>("GET", `${queuePath(p, q)}/messageTraces${query(f)}`),
  // projects the caller may see: every project of every account it lists
  // (with authentication on, an account administrator's unscoped token).
  projects: async () => {
    const { accounts = [] } = await call<{ accounts?: { id: string; name: string }[] }>("GET", "/v1/accounts");
    const lists = await Promise.all(
      accounts.map((a) =>
        call<{ projects?: { id: string; name: string }[] }>("GET", `/v1/accounts/${enc(a.id)}/projects`).then(
          (r) => (r.projects ?? []).map((p) => ({ ...p, account: a.name })),
          () => [],
        ),
      ),
    );
    return lists.flat();
  },
  quotas: (p: string) =>
    call<{
      quotas?: { maxQueues: number; maxGroupsPerQueue: number; maxMessageBytes: number; sendMessagesPerSecond: string; sendBytesPerSecond: string; maxStoredBytes: string };
      queuesUsed: number;
    }>("GET", `${projectPath(p)}/quotas`),
  listAudit: (params: Record<string, string>) => {
    const qs = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== "")).toString();
    return call<{ records?: AuditRecord[]; nextPageToken: string }>("GET", `/v1/audit/records${qs ? "?" + qs : ""}`);
  },
  verifyAudit: () =>
    call<{ intact: boolean; recordsChecked: string; firstOffset: string; firstBrokenOffset: string; brokenReason: string }>(
      "POST",
      "/v1/audit:verify",
    ),
};

// ---- Bodies: bytes travel as base64 in JSON. ----

export function b64ToBytes(b64: string): Uint8Array {
  const bin = atob(b64 || "");
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

export function textToB64(text: string): string {
  const bytes = new TextEncoder().encode(text);
  let bin = "";
  bytes.forEach((b) => (bin += String.fromCharCode(b)));
  return btoa(bin);
}

export const num = (s: string | number | undefined) => Number(s ?? 0);

// seconds of a protobuf Duration in JSON ("1.5s").
export const durationSeconds = (d: string | undefined) => (d ? parseFloat(d) : 0);

export function attrText(v: AttributeValue): string {
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.intValue !== undefined) return String(v.intValue);
  if (v.doubleValue !== undefined) return String(v.doubleValue);
  if (v.boolValue !== undefined) return String(v.boolValue);
  return "";
}
