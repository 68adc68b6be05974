import { useEffect, useRef, useState } from "react";

export interface Sample<T> {
  t: number; // ms since the epoch
  v: T;
}

// useSampler polls f every intervalMs while the page is open and keeps the
// last `keep` samples: the history of lag and rates is the browser's, since
// the API answers with the present only. The first sample is taken at once.
export function useSampler<T>(f: () => Promise<T>, intervalMs: number, deps: unknown[], keep = 150) {
  const [samples, setSamples] = useState<Sample<T>[]>([]);
  const [error, setError] = useState<unknown>(null);
  const fn = useRef(f);
  fn.current = f;
  useEffect(() => {
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    setSamples([]);
    const tick = async () => {
      try {
        const v = await fn.current();
        if (stopped) return;
        setError(null);
        setSamples((s) => [...s.slice(-(keep - 1)), { t: Date.now(), v }]);
      } catch (e) {
        if (!stopped) setError(e);
      }
      if (!stopped) timer = setTimeout(tick, intervalMs);
    };
    tick();
    return () => {
      stopped = true;
      if (timer) clearTimeout(timer);
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, deps);
  const refresh = async () => {
    const v = await fn.current();
    setSamples((s) => [...s.slice(-(keep - 1)), { t: Date.now(), v }]);
  };
  return { samples, latest: samples.length ? samples[samples.length - 1].v : undefined, error, refresh };
}

// rate is the change of a counter per second between the last two samples
// (0 when the counter went down: retention or a reset).
export function rate<T>(samples: Sample<T>[], get: (v: T) => number | undefined): number | undefined {
  if (samples.length < 2) return undefined;
  const a = samples[samples.length - 2];
  const b = samples[samples.length - 1];
  const va = get(a.v);
  const vb = get(b.v);
  if (va === undefined || vb === undefined) return undefined;
  const dt = (b.t - a.t) / 1000;
  if (dt <= 0) return undefined;
  return Math.max(0, (vb - va) / dt);
}

// rateSeries turns a counter's samples into [time, per second] points.
export function rateSeries<T>(samples: Sample<T>[], get: (v: T) => number | undefined): [number, number][] {
  const out: [number, number][] = [];
  for (let i = 1; i < samples.length; i++) {
    const va = get(samples[i - 1].v);
    const vb = get(samples[i].v);
    const dt = (samples[i].t - samples[i - 1].t) / 1000;
    if (va === undefined || vb === undefined || dt <= 0) continue;
    out.push([samples[i].t, Math.max(0, (vb - va) / dt)]);
  }
  return out;
}

export function fmtRate(r: number | undefined): string {
  if (r === undefined) return "…";
  if (r >= 100) return `${Math.round(r)}/s`;
  return `${r.toFixed(1)}/s`;
}

export function fmtDuration(seconds: number): string {
  if (!isFinite(seconds)) return "∞";
  if (seconds < 60) return `${Math.round(seconds)} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ${Math.round((seconds % 3600) / 60)} min`;
  return `${(seconds / 86400).toFixed(1)} d`;
}
