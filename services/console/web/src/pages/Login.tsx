import { Button, Card, Form, Input, Typography } from "antd";
import { useState } from "react";
import { login } from "../api";
import { errText } from "../components/Err";

// LoginPage gets a token from POST /v3/auth/tokens (Keystone v3, password
// method). Left without a project the token is unscoped: an account's
// administrator needs one for the audit log and the identity API.
export function LoginPage({ onToken }: { onToken: (token: string, project?: string) => void }) {
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  return (
    <div className="login">
      <Card title="DMS console — log in">
        <Form
          layout="vertical"
          initialValues={{ domain: "Default", user: "admin" }}
          onFinish={async (v) => {
            setBusy(true);
            setError("");
            try {
              onToken(await login(v.user, v.password, v.domain, v.project || undefined), v.project || undefined);
            } catch (e) {
              setError(errText(e));
            } finally {
              setBusy(false);
            }
          }}
        >
          <Form.Item label="Account" name="domain" rules={[{ required: true }]}>
            <Input data-testid="login-domain" />
          </Form.Item>
          <Form.Item label="User" name="user" rules={[{ required: true }]}>
            <Input data-testid="login-user" autoComplete="username" />
          </Form.Item>
          <Form.Item label="Password" name="password" rules={[{ required: true }]}>
            <Input.Password data-testid="login-password" autoComplete="current-password" />
          </Form.Item>
          <Form.Item label="Project (optional: scope the token to it)" name="project">
            <Input data-testid="login-project" />
          </Form.Item>
          {error && (
            <Typography.Paragraph type="danger" data-testid="login-error">
              {error}
            </Typography.Paragraph>
          )}
          <Button type="primary" htmlType="submit" loading={busy} data-testid="login-submit" block>
            Log in
          </Button>
        </Form>
      </Card>
    </div>
  );
}
