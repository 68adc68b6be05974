import { Segmented, Typography } from "antd";
import { useState } from "react";
import { b64ToBytes } from "../api";

type Mode = "text" | "json" | "hex";

// hexDump writes 16 bytes a line: offset, hex, printable characters.
export function hexDump(bytes: Uint8Array): string {
  const lines: string[] = [];
  for (let i = 0; i < bytes.length; i += 16) {
    const row = bytes.slice(i, i + 16);
    const hex = Array.from(row, (b) => b.toString(16).padStart(2, "0")).join(" ");
    const ascii = Array.from(row, (b) => (b >= 32 && b < 127 ? String.fromCharCode(b) : ".")).join("");
    lines.push(`${i.toString(16).padStart(8, "0")}  ${hex.padEnd(47)}  ${ascii}`);
  }
  return lines.join("\n");
}

function decode(bytes: Uint8Array): { text: string; utf8: boolean } {
  try {
    return { text: new TextDecoder("utf-8", { fatal: true }).decode(bytes), utf8: true };
  } catch {
    return { text: "", utf8: false };
  }
}

function prettyJSON(text: string): string | null {
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return null;
  }
}

// Body shows a message body as text, JSON or hex; it starts with JSON when
// the body parses as JSON, text when it is UTF-8, hex otherwise.
export function Body({ b64, compact }: { b64: string; compact?: boolean }) {
  const bytes = b64ToBytes(b64);
  const { text, utf8 } = decode(bytes);
  const json = utf8 ? prettyJSON(text) : null;
  const [mode, setMode] = useState<Mode>(json !== null ? "json" : utf8 ? "text" : "hex");
  let shown: string;
  if (mode === "json") shown = json ?? "(not JSON)";
  else if (mode === "text") shown = utf8 ? text : "(not UTF-8 text)";
  else shown = hexDump(bytes);
  if (compact) {
    const one = utf8 ? text : hexDump(bytes.slice(0, 16));
    return (
      <Typography.Text code className="body-compact" ellipsis style={{ maxWidth: 360 }}>
        {one}
      </Typography.Text>
    );
  }
  return (
    <div className="body-view">
      <Segmented<Mode>
        size="small"
        value={mode}
        onChange={setMode}
        options={[
          { label: "Text", value: "text" },
          { label: "JSON", value: "json" },
          { label: "Hex", value: "hex" },
        ]}
      />
      <span style={{ marginLeft: 8, color: "#888" }}>{bytes.length} bytes</span>
      <pre className="body-pre" data-mode={mode}>
        {shown}
      </pre>
    </div>
  );
}
