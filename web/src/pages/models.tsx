// Model training: versions and aliases, the learning curve, runs, train now, promote/rollback,
// alias history, shadow comparison; one version's calibration curve and confusion matrix.
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import { Link, useParams } from "react-router";
import { CartesianGrid, ComposedChart, Legend, Line, ResponsiveContainer, Scatter, Tooltip, XAxis, YAxis } from "recharts";
import { Confirm } from "../components/Confirm";
import { DataTable, type Column } from "../components/DataTable";
import { Badge, Button, Card, ErrorNote, Loading, Notice, PageHeader, Stat } from "../components/ui";
import { client, errorText, unwrap, type Schemas } from "../lib/api";
import { formatDate, formatNumber, formatPercent, formatSat } from "../lib/format";

type Version = Schemas["ModelVersionRead"];
type Run = Schemas["TrainingRunRead"];

function num(value: unknown): number | null {
  return typeof value === "number" && Number.isFinite(value) ? value : null;
}

/** A rate clipped to [0, 1]: doubly-robust estimates on few held-out rows can fall outside. */
function clip01(value: number | null): number | null {
  return value === null ? null : Math.min(1, Math.max(0, value));
}

function policyOf(v: Version): { success: number | null; price: number | null; served: number | null } {
  const policy = (v.metrics as Record<string, unknown>).policy as Record<string, Record<string, unknown> | null> | undefined;
  return {
    success: num(policy?.challenger?.success_dr) ?? num(policy?.challenger?.success_snips),
    price: num(policy?.challenger?.mean_price_sat),
    served: num(policy?.logging?.success_rate) ?? num(policy?.logging?.success),
  };
}

function duration(run: Run): string {
  if (!run.finished_at) return run.status === "running" ? "running" : "—";
  const s = (new Date(run.finished_at).getTime() - new Date(run.started_at).getTime()) / 1000;
  return s >= 60 ? `${(s / 60).toFixed(1)} min` : `${s.toFixed(1)} s`;
}

function LearningCurve({ versions }: { versions: Version[] }) {
  const data = versions.map((v) => {
    const p = policyOf(v);
    return {
      version: `v${v.version}`,
      success: clip01(p.success),
      price: p.price,
      auc: num((v.metrics as Record<string, unknown>).roc_auc),
      promoted: v.promoted ? clip01(p.success) ?? num((v.metrics as Record<string, unknown>).roc_auc) : null,
    };
  });
  if (data.length === 0) return <p className="text-sm text-slate-600">No version trained yet.</p>;
  return (
    <div className="h-80" role="img" aria-label="Learning curve: held-out policy success, mean price and ROC-AUC per model version">
      <ResponsiveContainer width="100%" height="100%">
        <ComposedChart data={data} margin={{ left: 8, right: 8, top: 8 }}>
          <CartesianGrid strokeDasharray="3 3" stroke="#e2e8f0" />
          <XAxis dataKey="version" tick={{ fontSize: 12 }} />
          <YAxis yAxisId="rate" domain={[0, 1]} tickFormatter={(v: number) => `${Math.round(v * 100)}%`} tick={{ fontSize: 12 }} />
          <YAxis yAxisId="sat" orientation="right" tickFormatter={(v: number) => v.toLocaleString("en-US")} tick={{ fontSize: 12 }} />
          <Tooltip formatter={(value, name) => (name === "mean price (sat)" ? formatSat(Number(value)) : formatPercent(Number(value)))} />
          <Legend />
          <Line isAnimationActive={false} yAxisId="rate" type="monotone" dataKey="success" name="policy success (held-out, DR)" stroke="#4f46e5" strokeWidth={2} connectNulls />
          <Line isAnimationActive={false} yAxisId="rate" type="monotone" dataKey="auc" name="ROC-AUC" stroke="#10b981" strokeDasharray="4 3" connectNulls />
          <Line isAnimationActive={false} yAxisId="sat" type="monotone" dataKey="price" name="mean price (sat)" stroke="#f59e0b" connectNulls />
          <Scatter isAnimationActive={false} yAxisId="rate" dataKey="promoted" name="promoted" fill="#111827" />
        </ComposedChart>
      </ResponsiveContainer>
    </div>
  );
}

export function ModelsPage() {
  const queryClient = useQueryClient();
  const status = useQuery({ queryKey: ["model", "status"], queryFn: () => unwrap(client.GET("/api/v2/model/status")) });
  const versions = useQuery({ queryKey: ["model", "versions"], queryFn: () => unwrap(client.GET("/api/v2/model/versions")) });
  const runs = useQuery({
    queryKey: ["model", "runs"],
    queryFn: () => unwrap(client.GET("/api/v2/model/runs", { params: { query: { limit: 100 } } })),
    refetchInterval: (query) => (query.state.data?.some((r) => r.status === "running") ? 2000 : false),
  });
  const events = useQuery({ queryKey: ["model", "events"], queryFn: () => unwrap(client.GET("/api/v2/model/alias-events", { params: { query: { limit: 200 } } })) });
  const shadow = useQuery({ queryKey: ["model", "shadow"], queryFn: () => unwrap(client.GET("/api/v2/model/shadow")) });
  const [confirm, setConfirm] = useState<{ action: "promote" | "rollback"; version?: number } | null>(null);
  const [openLog, setOpenLog] = useState<string | null>(null);

  const refresh = () => void queryClient.invalidateQueries({ queryKey: ["model"] });
  const train = useMutation({ mutationFn: () => unwrap(client.POST("/api/v2/model/train")), onSuccess: refresh });
  const move = useMutation({
    mutationFn: async (c: { action: "promote" | "rollback"; version?: number }) =>
      c.action === "promote"
        ? unwrap(client.POST("/api/v2/model/promote/{version}", { params: { path: { version: c.version ?? 0 } } }))
        : unwrap(client.POST("/api/v2/model/rollback")),
    onSuccess: () => {
      setConfirm(null);
      refresh();
    },
  });

  const versionColumns: Column<Version>[] = [
    { key: "version", header: "Version", render: (v) => <Link className="font-medium text-indigo-700 hover:underline" to={`/models/${v.version}`}>v{v.version}</Link>, sort: (v) => v.version },
    { key: "aliases", header: "Aliases", render: (v) => <span className="flex gap-1">{v.is_champion ? <Badge tone="completed">champion</Badge> : null}{shadow.data?.challenger_version === v.version ? <Badge tone="delivered">challenger</Badge> : null}{v.promoted && !v.is_champion ? <Badge>was champion</Badge> : null}</span> },
    { key: "outcomes", header: "Outcomes", render: (v) => v.outcomes_seen.toLocaleString("en-US"), sort: (v) => v.outcomes_seen, align: "right" },
    { key: "auc", header: "ROC-AUC", render: (v) => formatNumber(num((v.metrics as Record<string, unknown>).roc_auc)), sort: (v) => num((v.metrics as Record<string, unknown>).roc_auc), align: "right" },
    { key: "brier", header: "Brier", render: (v) => formatNumber(num((v.metrics as Record<string, unknown>).brier)), sort: (v) => num((v.metrics as Record<string, unknown>).brier), align: "right" },
    { key: "ece", header: "ECE", render: (v) => formatNumber(v.ece ?? null), sort: (v) => v.ece ?? null, align: "right" },
    { key: "success", header: "Policy success", render: (v) => {
      const raw = policyOf(v).success;
      const shown = clip01(raw);
      return raw !== shown && raw !== null ? <span title={`the estimate is ${raw.toFixed(3)}: outside [0, 1] on few held-out rows, shown clipped`}>{formatPercent(shown)}*</span> : formatPercent(shown);
    }, sort: (v) => policyOf(v).success, align: "right" },
    { key: "created", header: "Trained", render: (v) => formatDate(v.created_at), sort: (v) => v.created_at },
    { key: "act", header: "", render: (v) => (v.is_champion ? null : <Button variant="secondary" className="px-2 py-1 text-xs" onClick={() => setConfirm({ action: "promote", version: v.version })}>Promote</Button>) },
  ];
  const runColumns: Column<Run>[] = [
    { key: "started", header: "Started", render: (r) => formatDate(r.started_at), sort: (r) => r.started_at },
    { key: "trigger", header: "Trigger", render: (r) => r.trigger, sort: (r) => r.trigger },
    { key: "status", header: "Status", render: (r) => <Badge>{r.status}</Badge>, sort: (r) => r.status },
    { key: "outcomes", header: "Outcomes", render: (r) => r.outcomes_used.toLocaleString("en-US"), sort: (r) => r.outcomes_used, align: "right" },
    { key: "duration", header: "Duration", render: duration },
    { key: "log", header: "Log", render: (r) => (r.log ? <Button variant="ghost" className="px-2 py-1 text-xs" aria-expanded={openLog === r.id} onClick={() => setOpenLog(openLog === r.id ? null : r.id)}>{openLog === r.id ? "Hide" : "Show"}</Button> : "—") },
  ];

  const s = status.data;
  const versionList = versions.data ?? [];
  return (
    <div className="space-y-6">
      <PageHeader
        title="Duke, the router"
        subtitle="Versions, training runs and the champion alias."
        actions={
          <>
            <Button busy={train.isPending} onClick={() => train.mutate()}>Train now</Button>
            <Button variant="secondary" disabled={!s?.champion_version} onClick={() => setConfirm({ action: "rollback" })}>Roll back</Button>
          </>
        }
      />
      {train.error ? <ErrorNote error={train.error} /> : null}
      {train.data ? <Notice tone="success">Training run {train.data.status}: {train.data.outcomes_used} outcomes.</Notice> : null}
      {status.isPending ? <Loading /> : status.error ? <ErrorNote error={status.error} onRetry={() => status.refetch()} /> : s ? (
        <div className="grid gap-4 sm:grid-cols-2 lg:grid-cols-4">
          <Stat label="Champion" value={s.champion_version === null ? "none" : `v${s.champion_version}`} />
          <Stat label="Versions" value={s.versions} />
          <Stat label="Outcomes" value={s.outcomes.toLocaleString("en-US")} />
          <Stat label="Since last training" value={s.outcomes_since_last_training.toLocaleString("en-US")} hint={`retrains every ${s.retrain_every_n}`} />
        </div>
      ) : null}
      <Card title="Learning curve">
        {versions.isPending ? <Loading /> : versions.error ? <ErrorNote error={versions.error} /> : <LearningCurve versions={versionList} />}
      </Card>
      <Card title="Versions">
        {versions.isPending ? <Loading /> : versions.error ? <ErrorNote error={versions.error} /> : <DataTable label="Model versions" columns={versionColumns} rows={[...versionList].reverse()} rowKey={(v) => String(v.version)} empty="No version yet: train one when there are outcomes." />}
      {versionList.some((v) => { const raw = policyOf(v).success; return raw !== null && raw !== clip01(raw); }) ? <p className="mt-2 text-xs text-slate-600">* A doubly-robust estimate outside [0, 1] (few held-out rows), shown clipped; hover for the value.</p> : null}
      </Card>
      <div className="grid gap-6 lg:grid-cols-5">
        <Card title="Training runs" className="lg:col-span-3">
          {runs.isPending ? <Loading /> : runs.error ? <ErrorNote error={runs.error} /> : (
            <>
              <DataTable label="Training runs" columns={runColumns} rows={runs.data} rowKey={(r) => r.id} empty="No training run yet." />
              {openLog ? <pre tabIndex={0} aria-label="Training run log" className="mt-3 max-h-64 overflow-auto focus-visible:outline-2 focus-visible:outline-indigo-600 whitespace-pre-wrap rounded-md bg-slate-900 p-3 text-xs text-slate-100">{runs.data.find((r) => r.id === openLog)?.log}</pre> : null}
            </>
          )}
        </Card>
        <Card title="Alias history" className="lg:col-span-2">
          {events.isPending ? <Loading /> : events.error ? <ErrorNote error={events.error} /> : events.data.length === 0 ? <p className="text-sm text-slate-600">No alias has moved yet.</p> : (
            <ol className="space-y-2 text-sm">
              {events.data.map((e) => (
                <li key={e.id} className="rounded-md bg-slate-50 px-3 py-2 ring-1 ring-slate-200">
                  <span className="font-medium">{e.alias}</span> {e.previous_version === null ? "set to" : `v${e.previous_version} →`} <span className="font-medium">v{e.version}</span> · {e.action} by {e.actor ?? "the trainer"} · {formatDate(e.created_at)}
                  {e.reason ? <div className="text-xs text-slate-600">{e.reason}</div> : null}
                </li>
              ))}
            </ol>
          )}
        </Card>
      </div>
      <Card title="Shadow / canary: challenger against the live choice">
        {shadow.isPending ? <Loading /> : shadow.error ? <ErrorNote error={shadow.error} /> : shadow.data.challenger_version === null ? (
          <p className="text-sm text-slate-600">No challenger in shadow. Set one on a version’s page.</p>
        ) : (
          <div className="grid gap-4 sm:grid-cols-3 lg:grid-cols-6">
            <Stat label="Challenger" value={`v${shadow.data.challenger_version}`} />
            <Stat label="Tasks scored" value={shadow.data.tasks ?? 0} hint={`${shadow.data.finished ?? 0} finished`} />
            <Stat label="Agreement" value={formatPercent(shadow.data.agreement_rate)} />
            <Stat label="Live success" value={formatPercent(shadow.data.live_success_rate)} />
            <Stat label="Challenger success" value={formatPercent(shadow.data.challenger_success_snips)} hint="SNIPS estimate" />
            <Stat label="Mean price" value={formatSat(Math.round(shadow.data.live_mean_price_sat ?? 0))} hint={`challenger ${formatSat(Math.round(shadow.data.challenger_mean_price_sat ?? 0))}`} />
          </div>
        )}
      </Card>
      <Confirm
        open={confirm !== null}
        title={confirm?.action === "promote" ? `Promote v${confirm.version} to champion?` : "Roll back the champion?"}
        confirmLabel={confirm?.action === "promote" ? "Promote" : "Roll back"}
        danger={confirm?.action === "rollback"}
        busy={move.isPending}
        onClose={() => { setConfirm(null); move.reset(); }}
        onConfirm={() => confirm && move.mutate(confirm)}
      >
        {confirm?.action === "promote" ? "Every new task is routed by this version from now on. The move is recorded in the alias history." : `The champion alias returns to the version before v${s?.champion_version ?? "?"}.`}
        {move.error ? <p role="alert" className="mt-2 text-rose-700">{errorText(move.error)}</p> : null}
      </Confirm>
    </div>
  );
}

export function ModelVersionPage() {
  const { version = "" } = useParams();
  const queryClient = useQueryClient();
  const versions = useQuery({ queryKey: ["model", "versions"], queryFn: () => unwrap(client.GET("/api/v2/model/versions")) });
  const challenger = useMutation({
    mutationFn: () => unwrap(client.POST("/api/v2/model/challenger/{version}", { params: { path: { version: Number(version) } } })),
    onSuccess: () => void queryClient.invalidateQueries({ queryKey: ["model"] }),
  });
  if (versions.isPending) return <Loading />;
  if (versions.error) return <ErrorNote error={versions.error} onRetry={() => versions.refetch()} />;
  const v = versions.data.find((x) => String(x.version) === version);
  if (!v) return <ErrorNote error={new Error(`model version ${version} not found`)} />;
  const m = v.metrics as Record<string, unknown>;
  const matrix = (m.confusion_matrix as number[][] | undefined) ?? [[num(m.tn) ?? 0, num(m.fp) ?? 0], [num(m.fn) ?? 0, num(m.tp) ?? 0]];
  const bins = (v.calibration ?? []).filter((b) => b.count > 0).map((b) => ({ predicted: b.mean_predicted, observed: b.observed_rate, count: b.count }));
  const promotion = v.promotion;
  return (
    <div className="space-y-6">
      <PageHeader
        title={`Model v${v.version}`}
        subtitle={<>Trained {formatDate(v.created_at)} on {v.outcomes_seen.toLocaleString("en-US")} outcomes {v.is_champion ? <Badge tone="completed">champion</Badge> : null}</>}
        actions={<><Button variant="secondary" busy={challenger.isPending} onClick={() => challenger.mutate()}>Shadow as challenger</Button><Link to="/models" className="self-center text-sm text-indigo-700 underline">All versions</Link></>}
      />
      {challenger.error ? <ErrorNote error={challenger.error} /> : null}
      {challenger.isSuccess ? <Notice tone="success">v{v.version} now scores every new task in shadow.</Notice> : null}
      <div className="grid gap-4 sm:grid-cols-3 lg:grid-cols-6">
        {(["accuracy", "precision", "recall", "f1", "roc_auc", "brier"] as const).map((k) => (
          <Stat key={k} label={k.replace("_", "-")} value={num(m[k]) === null ? "—" : (num(m[k]) as number).toFixed(3)} />
        ))}
      </div>
      <div className="grid gap-6 lg:grid-cols-2">
        <Card title={`Calibration (ECE ${formatNumber(v.ece ?? null)})`}>
          {bins.length === 0 ? <p className="text-sm text-slate-600">No calibration data.</p> : (
            <div className="h-72" role="img" aria-label="Calibration curve: observed success rate against mean predicted probability per bin">
              <ResponsiveContainer width="100%" height="100%">
                <ComposedChart data={bins} margin={{ left: 8, right: 8, top: 8 }}>
                  <CartesianGrid strokeDasharray="3 3" stroke="#e2e8f0" />
                  <XAxis type="number" dataKey="predicted" domain={[0, 1]} name="predicted" tick={{ fontSize: 12 }} />
                  <YAxis type="number" domain={[0, 1]} tick={{ fontSize: 12 }} />
                  <Tooltip formatter={(value) => formatPercent(Number(value))} />
                  <Line isAnimationActive={false} data={[{ predicted: 0, observed: 0 }, { predicted: 1, observed: 1 }]} dataKey="observed" name="perfect" stroke="#94a3b8" strokeDasharray="4 4" dot={false} />
                  <Line isAnimationActive={false} dataKey="observed" name="observed" stroke="#4f46e5" strokeWidth={2} />
                </ComposedChart>
              </ResponsiveContainer>
            </div>
          )}
        </Card>
        <Card title="Confusion matrix (held-out, threshold 0.5)">
          <table className="w-full max-w-sm text-center text-sm" aria-label="Confusion matrix">
            <thead>
              <tr>
                <td />
                <th scope="col" className="p-2 text-slate-600">predicted failure</th>
                <th scope="col" className="p-2 text-slate-600">predicted success</th>
              </tr>
            </thead>
            <tbody>
              {(["actual failure", "actual success"] as const).map((label, i) => (
                <tr key={label}>
                  <th scope="row" className="p-2 text-left text-slate-600">{label}</th>
                  {[0, 1].map((j) => (
                    <td key={j} className={`p-4 text-lg font-semibold ${i === j ? "bg-emerald-50 text-emerald-900" : "bg-rose-50 text-rose-900"}`}>{formatNumber(matrix[i]?.[j] ?? 0)}</td>
                  ))}
                </tr>
              ))}
            </tbody>
          </table>
        </Card>
      </div>
      {promotion ? (
        <Card title="Promotion decision">
          <p className="text-sm text-slate-800">{promotion.promote ? "Promoted" : "Not promoted"}: {promotion.reason}</p>
          <p className="mt-1 text-xs text-slate-600">
            {promotion.estimator} on {promotion.n_rows} rows; difference {formatNumber(promotion.difference ?? null)} [{formatNumber(promotion.low ?? null)}, {formatNumber(promotion.high ?? null)}] at level {promotion.level}
          </p>
        </Card>
      ) : null}
    </div>
  );
}
