import ReactECharts from "echarts-for-react/esm/core";
import * as echarts from "echarts/core";
import { LineChart } from "echarts/charts";
import { GridComponent, LegendComponent, TooltipComponent } from "echarts/components";
import { CanvasRenderer } from "echarts/renderers";

echarts.use([LineChart, GridComponent, LegendComponent, TooltipComponent, CanvasRenderer]);

export interface Series {
  name: string;
  points: [number, number][];
}

// TimeChart draws series of [time, value] points; it is redrawn in place
// as samples arrive, without reloading the page.
export function TimeChart({ series, unit, height = 220, testid }: { series: Series[]; unit: string; height?: number; testid?: string }) {
  const option = {
    animation: false,
    grid: { left: 56, right: 16, top: 32, bottom: 28 },
    tooltip: { trigger: "axis" },
    legend: { top: 0, type: "scroll" },
    xAxis: { type: "time" },
    yAxis: { type: "value", name: unit, minInterval: 1, nameTextStyle: { align: "left" } },
    series: series.map((s) => ({ name: s.name, type: "line", showSymbol: false, data: s.points })),
  };
  return (
    <div data-testid={testid} data-points={series.reduce((n, s) => n + s.points.length, 0)}>
      <ReactECharts echarts={echarts} option={option} notMerge style={{ height }} />
    </div>
  );
}
