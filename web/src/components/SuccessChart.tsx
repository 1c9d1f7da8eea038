// An agent's success rate over time from GET /api/v2/agents/{id}/series: the share of its tasks
// finished in each bucket that succeeded (by their current label), and the smoothed rate and
// price multiplier the reputation formula gives its record up to each bucket's end.
import { useQuery } from "@tanstack/react-query";
import { useState } from "react";
import { CartesianGrid, Legend, Line, LineChart, ResponsiveContainer, Tooltip, XAxis, YAxis } from "recharts";
import { client, unwrap, type Schemas } from "../lib/api";
import { formatPercent } from "../lib/format";
import { tick, WindowPicker, WINDOWS } from "./MoneyChart";
import { ErrorNote, Loading } from "./ui";

type Point = Schemas["AgentSeriesPoint"];
type Bucket = Schemas["MoneyBucket"];

/** One chart row: rates as percentages (null: no task finished in the bucket / before the agent existed). */
export interface SuccessRow {
  label: string;
  outcomes: number;
  rate: number | null;
  smoothed: number | null;
  multiplier: number | null;
}

const percent = (value: number | null | undefined) => (value === null || value === undefined ? null : Math.round(value * 1000) / 10);

/** Build the chart rows of a series' points; ``successes`` and ``outcomes`` total the window. */
export function successRows(points: Point[], bucket: Bucket): { rows: SuccessRow[]; outcomes: number; successes: number } {
  let outcomes = 0;
  let successes = 0;
  const rows = points.map((p) => {
    outcomes += p.outcomes ?? 0;
    successes += p.successes ?? 0;
    return {
      label: tick(p.start, bucket),
      outcomes: p.outcomes ?? 0,
      rate: percent(p.success_rate),
      smoothed: percent(p.smoothed_success_rate),
      multiplier: p.reputation_multiplier ?? null,
    };
  });
  return { rows, outcomes, successes };
}

export function SuccessChart({ agentId }: { agentId: string }) {
  const [window, setWindow] = useState(WINDOWS[1]);
  const series = useQuery({
    queryKey: ["agent", agentId, "series", window.bucket, window.days],
    queryFn: () => unwrap(client.GET("/api/v2/agents/{agent_id}/series", { params: { path: { agent_id: agentId }, query: { bucket: window.bucket, days: window.days } } })),
  });
  const { rows, outcomes, successes } = series.data ? successRows(series.data.points, window.bucket) : { rows: [], outcomes: 0, successes: 0 };
  const multiplier = (row: SuccessRow | undefined) => (row?.multiplier === null || row?.multiplier === undefined ? "" : `, ${row.multiplier.toFixed(1)}× price`);
  return (
    <div>
      <div className="mb-3 flex flex-wrap items-center justify-between gap-2">
        <p className="text-sm text-slate-700">
          Success rate: <strong className="tabular-nums">{outcomes ? formatPercent(successes / outcomes) : "—"}</strong> of {outcomes} tasks in the last {window.label}
        </p>
        <WindowPicker value={window} onChange={setWindow} />
      </div>
      {series.isPending ? <Loading /> : series.error ? <ErrorNote error={series.error} onRetry={() => series.refetch()} /> : outcomes === 0 ? (
        <p className="text-sm text-slate-600">No finished task in this window yet.</p>
      ) : (
        <div className="h-72" role="img" aria-label={`Success rate per ${window.bucket} and the smoothed rate the agent is priced on, last ${window.label}`}>
          <ResponsiveContainer width="100%" height="100%">
            <LineChart data={rows} margin={{ left: 16, right: 8, top: 8 }}>
              <CartesianGrid strokeDasharray="3 3" stroke="#e2e8f0" />
              <XAxis dataKey="label" tick={{ fontSize: 12 }} minTickGap={16} />
              <YAxis domain={[0, 100]} tick={{ fontSize: 12 }} tickFormatter={(v: number) => `${v}%`} />
              <Tooltip
                formatter={(v, name, item) => {
                  const row = item.payload as SuccessRow;
                  return [v === null || v === undefined ? "—" : `${Number(v)}%`, name === "rate" ? `success rate (${row.outcomes} tasks)` : `smoothed rate${multiplier(row)}`];
                }}
              />
              <Legend wrapperStyle={{ fontSize: 12 }} formatter={(value) => <span className="text-slate-700">{value === "rate" ? `success rate per ${window.bucket}` : "smoothed rate (priced on)"}</span>} />
              <Line type="linear" dataKey="rate" name="rate" stroke="#059669" dot={{ r: 2 }} connectNulls={false} isAnimationActive={false} />
              <Line type="stepAfter" dataKey="smoothed" name="smoothed" stroke="#4338ca" dot={{ r: 1.5 }} isAnimationActive={false} />
            </LineChart>
          </ResponsiveContainer>
        </div>
      )}
    </div>
  );
}
