import { Alert } from "antd";
import { ApiError } from "../api";

export function errText(e: unknown): string {
  if (e instanceof ApiError) return e.toString();
  if (e instanceof Error) return e.message;
  return String(e);
}

export function Err({ error }: { error: unknown }) {
  if (!error) return null;
  return <Alert data-testid="error" type="error" showIcon message={errText(error)} style={{ marginBottom: 12 }} />;
}
