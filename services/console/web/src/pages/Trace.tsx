import { Alert, Card } from "antd";

// TracePage shows a message's life; it waits for the public GetMessageTrace
// API.
export function TracePage() {
  return (
    <Card size="small" title="Message trace">
      <Alert type="info" message="Traces need the GetMessageTrace API, which this server does not offer yet." />
    </Card>
  );
}
