import { Alert, Card } from "antd";
import { QueueGroupPicker } from "../components/Pickers";

// BrowserPage reads a queue's messages without consuming them; it waits for
// the public BrowseMessages API.
export function BrowserPage() {
  return (
    <Card size="small" title="Message browser" extra={<QueueGroupPicker withGroup={false} />}>
      <Alert type="info" message="Browsing needs the BrowseMessages API, which this server does not offer yet." />
    </Card>
  );
}
