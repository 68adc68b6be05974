import { Select, Space } from "antd";
import { useEffect, useState } from "react";
import { useSearchParams } from "react-router-dom";
import { api, ConsumerGroup, Queue } from "../api";
import { useProject } from "../project";

// useSelection keeps the chosen queue and group in the URL (?queue=&group=),
// so that a page can be linked to and reloaded.
export function useSelection() {
  const [params, setParams] = useSearchParams();
  const queue = params.get("queue") ?? "";
  const group = params.get("group") ?? "";
  const set = (q: string, g: string) => {
    const next = new URLSearchParams(params);
    if (q) next.set("queue", q);
    else next.delete("queue");
    if (g) next.set("group", g);
    else next.delete("group");
    setParams(next, { replace: true });
  };
  return { queue, group, set, params, setParams };
}

export function QueueGroupPicker({ withGroup = true }: { withGroup?: boolean }) {
  const project = useProject();
  const { queue, group, set } = useSelection();
  const [queues, setQueues] = useState<Queue[]>([]);
  const [groups, setGroups] = useState<ConsumerGroup[]>([]);
  useEffect(() => {
    api.listQueues(project).then((r) => setQueues(r.queues ?? []), () => setQueues([]));
  }, [project]);
  useEffect(() => {
    if (!queue || !withGroup) return setGroups([]);
    api.listGroups(project, queue).then(setGroups, () => setGroups([]));
  }, [project, queue, withGroup]);
  // One group only: take it.
  useEffect(() => {
    if (queue && !group && groups.length === 1) set(queue, groups[0].displayName);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [groups]);
  return (
    <Space wrap>
      <Select
        data-testid="pick-queue"
        showSearch
        placeholder="Queue"
        style={{ width: 240 }}
        value={queue || undefined}
        onChange={(q) => set(q, "")}
        options={queues.map((q) => ({ value: q.displayName, label: q.displayName }))}
      />
      {withGroup && (
        <Select
          data-testid="pick-group"
          showSearch
          placeholder="Consumer group"
          style={{ width: 220 }}
          value={group || undefined}
          onChange={(g) => set(queue, g)}
          options={groups.map((g) => ({ value: g.displayName, label: g.displayName }))}
        />
      )}
    </Space>
  );
}
