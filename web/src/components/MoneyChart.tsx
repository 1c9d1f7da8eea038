// Money over time from GET /api/v2/ledger/series: bars per bucket and the running total.
import { useQuery } from "@tanstack/react-query";
import { useState } from "react";
import { Bar, CartesianGrid, ComposedChart, Legend, Line, ResponsiveContainer, Tooltip, XAxis, YAxis } from "recharts";
import { client, unwrap, type Schemas } from "../lib/api";
import { formatSat } from "../lib/format";
import { ErrorNote, Loading } from "./ui";

type Point = Schemas["MoneyPoint"];
type Bucket = Schemas["MoneyBucket"];

/** What a chart plots per bucket: a label and how to read it off a point (sat). */
export interface Measure {
  label: string;
  value: (p: Point) => number;
}

export const SPENT: Measure = { label: "spent (net of refunds)", value: (p) => (p.spent_sat ?? 0) - (p.refunded_sat ?? 0) };
export const EARNED: Measure = { label: "earned", value: (p) => p.earned_sat ?? 0 };

/** A chart's time window: its label, bucket width and length in days (as the series endpoints take them). */
export interface Window {
  label: string;
  bucket: Bucket;
  days: number;
}

export const WINDOWS: Window[] = [
  { label: "48 hours", bucket: "hour", days: 2 },
  { label: "30 days", bucket: "day", days: 30 },
  { label: "1 year", bucket: "week", days: 364 },
];

/** Label a bucket's start on the x axis: its day, and the hour (UTC) for hour buckets. */
export function tick(start: string, bucket: Bucket): string {
  const date = new Date(start);
  const day = date.toLocaleDateString("en-GB", { day: "2-digit", month: "short", timeZone: "UTC" });
  return bucket === "hour" ? `${day} ${String(date.getUTCHours()).padStart(2, "0")}:00` : day;
}

/** Build the chart rows: each bucket's amount and the running total since the window began. */
export function chartRows(points: Point[], measure: Measure, bucket: Bucket): { label: string; amount: number; total: number }[] {
  let total = 0;
  return points.map((p) => {
    const amount = measure.value(p);
    total += amount;
    return { label: tick(p.start, bucket), amount, total };
  });
}

/** The buttons choosing a chart's time window among ``WINDOWS``. */
export function WindowPicker({ value, onChange }: { value: Window; onChange: (w: Window) => void }) {
  return (
    <div role="group" aria-label="Time window" className="inline-flex rounded-md shadow-sm ring-1 ring-slate-300">
      {WINDOWS.map((w) => (
        <button
          key={w.label}
          type="button"
          aria-pressed={w === value}
          onClick={() => onChange(w)}
          className={`px-3 py-1.5 text-xs font-medium first:rounded-l-md last:rounded-r-md focus-visible:outline-2 focus-visible:outline-indigo-600 ${w === value ? "bg-indigo-600 text-white" : "bg-white text-slate-800 hover:bg-slate-50"}`}
        >
          {w.label}
        </button>
      ))}
    </div>
  );
}

export function MoneyChart({ measure, agentId, title }: { measure: Measure; agentId?: string; title: string }) {
  const [window, setWindow] = useState(WINDOWS[1]);
  const series = useQuery({
    queryKey: ["ledger-series", window.bucket, window.days, agentId ?? null],
    queryFn: () => unwrap(client.GET("/api/v2/ledger/series", { params: { query: { bucket: window.bucket, days: window.days, agent_id: agentId } } })),
  });
  const rows = series.data ? chartRows(series.data.points, measure, window.bucket) : [];
  const total = rows.length ? rows[rows.length - 1].total : 0;
  return (
    <div>
      <div className="mb-3 flex flex-wrap items-center justify-between gap-2">
        <p className="text-sm text-slate-700">
          {title}: <strong className="tabular-nums">{formatSat(total)}</strong> in the last {window.label}
        </p>
        <WindowPicker value={window} onChange={setWindow} />
      </div>
      {series.isPending ? <Loading /> : series.error ? <ErrorNote error={series.error} onRetry={() => series.refetch()} /> : total === 0 && rows.every((r) => r.amount === 0) ? (
        <p className="text-sm text-slate-600">Nothing in this window yet.</p>
      ) : (
        <div className="h-72" role="img" aria-label={`${title} per ${window.bucket} and running total, last ${window.label}`}>
          <ResponsiveContainer width="100%" height="100%">
            <ComposedChart data={rows} margin={{ left: 16, right: 8, top: 8 }}>
              <CartesianGrid strokeDasharray="3 3" stroke="#e2e8f0" />
              <XAxis dataKey="label" tick={{ fontSize: 12 }} minTickGap={16} />
              <YAxis tick={{ fontSize: 12 }} tickFormatter={(v: number) => v.toLocaleString("en-US")} />
              <Tooltip formatter={(v) => formatSat(Number(v))} />
              <Legend wrapperStyle={{ fontSize: 12 }} formatter={(value) => <span className="text-slate-700">{value}</span>} />
              <Bar dataKey="amount" name={`${measure.label} per ${window.bucket}`} fill="#818cf8" isAnimationActive={false} />
              <Line type="linear" dataKey="total" name="running total" stroke="#4338ca" dot={false} isAnimationActive={false} />
            </ComposedChart>
          </ResponsiveContainer>
        </div>
      )}
    </div>
  );
}
