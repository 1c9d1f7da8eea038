// Admin: system metrics, users (credit, deactivate, reset password), leaderboard, ledger, exports.
import { keepPreviousData, useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import { Bar, BarChart, CartesianGrid, Cell, ResponsiveContainer, Tooltip, XAxis, YAxis } from "recharts";
import { Confirm } from "../components/Confirm";
import { DataTable, type Column } from "../components/DataTable";
import { Badge, Button, Card, ErrorNote, Loading, Notice, PageHeader, Select, Stat, TextField } from "../components/ui";
import { client, errorText, unwrap, type Schemas } from "../lib/api";
import { downloadFile } from "../lib/download";
import { formatDate, formatMs, formatPercent, formatSat } from "../lib/format";
import { fieldError, formError } from "../lib/useForm";

const STATUS_COLORS: Record<string, string> = {
  created: "#94a3b8",
  assigned: "#38bdf8",
  executing: "#6366f1",
  delivered: "#f59e0b",
  completed: "#10b981",
  rejected: "#f43f5e",
  failed: "#e11d48",
  cancelled: "#64748b",
};

export function AdminHome() {
  const metrics = useQuery({ queryKey: ["admin", "metrics"], queryFn: () => unwrap(client.GET("/api/v2/admin/metrics")), refetchInterval: 15_000 });
  if (metrics.isPending) return <Loading />;
  if (metrics.error) return <ErrorNote error={metrics.error} onRetry={() => metrics.refetch()} />;
  const m = metrics.data;
  const byStatus = Object.entries(m.tasks_by_status as Record<string, number>).map(([status, count]) => ({ status, count }));
  return (
    <div>
      <PageHeader title="Marketplace overview" subtitle="System totals, refreshed every 15 seconds." />
      <div className="mb-6 grid gap-4 sm:grid-cols-2 lg:grid-cols-4">
        <Stat label="Tasks" value={m.tasks.toLocaleString("en-US")} />
        <Stat label="Success rate" value={formatPercent(m.success_rate)} hint={`${m.outcomes.toLocaleString("en-US")} outcomes`} />
        <Stat label="Satoshis transacted" value={formatSat(m.satoshis_transacted)} />
        <Stat label="Champion model" value={m.production_model_version === null ? "none" : `v${m.production_model_version}`} hint={`${m.training_samples.toLocaleString("en-US")} training samples`} />
        <Stat label="Users" value={m.users.toLocaleString("en-US")} hint={Object.entries(m.users_by_role as Record<string, number>).map(([r, n]) => `${n} ${r === "agent" ? "operator" : r}`).join(" · ")} />
        <Stat label="Active agents" value={m.active_agents} />
      </div>
      <Card title="Tasks by status">
        {byStatus.length === 0 ? <p className="text-sm text-slate-600">No tasks yet.</p> : (
          <div className="h-72" role="img" aria-label={`Tasks by status: ${byStatus.map((b) => `${b.status} ${b.count}`).join(", ")}`}>
            <ResponsiveContainer width="100%" height="100%">
              <BarChart data={byStatus} margin={{ left: 8, right: 8, top: 8 }}>
                <CartesianGrid strokeDasharray="3 3" stroke="#e2e8f0" />
                <XAxis dataKey="status" tick={{ fontSize: 12 }} />
                <YAxis allowDecimals={false} tick={{ fontSize: 12 }} />
                <Tooltip />
                <Bar dataKey="count" name="tasks" isAnimationActive={false}>
                  {byStatus.map((b) => (
                    <Cell key={b.status} fill={STATUS_COLORS[b.status] ?? "#6366f1"} />
                  ))}
                </Bar>
              </BarChart>
            </ResponsiveContainer>
          </div>
        )}
      </Card>
    </div>
  );
}

type User = Schemas["UserRead"];
const USER_PAGE = 25;

function CreditForm({ user, onDone }: { user: User; onDone: () => void }) {
  const [amount, setAmount] = useState("");
  const [memo, setMemo] = useState("");
  const credit = useMutation({
    mutationFn: () => unwrap(client.POST("/api/v2/admin/users/{user_id}/credit", { params: { path: { user_id: user.id } }, body: { amount_sat: Number(amount), memo } })),
    onSuccess: onDone,
  });
  return (
    <form className="space-y-3" onSubmit={(e) => { e.preventDefault(); credit.mutate(); }} noValidate>
      {credit.error ? <p role="alert" className="rounded-md bg-rose-50 px-3 py-2 text-sm text-rose-800">{formError(credit.error)}</p> : null}
      {credit.data ? <Notice tone="success">Credited; balance now {formatSat(credit.data.balance_sat)}.</Notice> : null}
      <TextField label="Amount (sat)" type="number" min={1} value={amount} onChange={(e) => setAmount(e.target.value)} error={fieldError(credit.error, "amount_sat")} />
      <TextField label="Memo" value={memo} onChange={(e) => setMemo(e.target.value)} error={fieldError(credit.error, "memo")} />
      <Button type="submit" busy={credit.isPending}>Credit {user.email}</Button>
    </form>
  );
}

export function UsersPage() {
  const queryClient = useQueryClient();
  const [search, setSearch] = useState("");
  const [role, setRole] = useState("");
  const [offset, setOffset] = useState(0);
  const [selected, setSelected] = useState<User | null>(null);
  const [confirm, setConfirm] = useState<{ user: User; action: "deactivate" | "reactivate" | "reset" } | null>(null);
  const [tempPassword, setTempPassword] = useState<{ email: string; password: string } | null>(null);
  const users = useQuery({
    queryKey: ["admin", "users", { search, role, offset }],
    queryFn: () => unwrap(client.GET("/api/v2/admin/users", { params: { query: { q: search || undefined, role: (role || undefined) as Schemas["UserRole"] | undefined, limit: USER_PAGE, offset } } })),
    placeholderData: keepPreviousData,
  });
  const act = useMutation({
    mutationFn: async ({ user, action }: { user: User; action: "deactivate" | "reactivate" | "reset" }) => {
      const path = { params: { path: { user_id: user.id } } };
      if (action === "deactivate") await unwrap(client.POST("/api/v2/admin/users/{user_id}/deactivate", path));
      else if (action === "reactivate") await unwrap(client.POST("/api/v2/admin/users/{user_id}/reactivate", path));
      else {
        const reset = await unwrap(client.POST("/api/v2/admin/users/{user_id}/reset-password", path));
        setTempPassword({ email: user.email, password: reset.temporary_password });
      }
    },
    onSuccess: () => {
      setConfirm(null);
      void queryClient.invalidateQueries({ queryKey: ["admin", "users"] });
    },
  });

  const columns: Column<User>[] = [
    { key: "email", header: "Email", render: (u) => <span className="font-medium">{u.email}</span>, sort: (u) => u.email },
    { key: "name", header: "Name", render: (u) => u.display_name || "—", sort: (u) => u.display_name },
    { key: "role", header: "Role", render: (u) => (u.role === "agent" ? "operator" : u.role), sort: (u) => u.role },
    { key: "active", header: "State", render: (u) => <Badge tone={u.is_active ? "completed" : "failed"}>{u.is_active ? "active" : "deactivated"}</Badge>, sort: (u) => (u.is_active ? 1 : 0) },
    { key: "created", header: "Joined", render: (u) => formatDate(u.created_at), sort: (u) => u.created_at },
    {
      key: "actions",
      header: "Actions",
      render: (u) => (
        <div className="flex flex-wrap gap-1">
          <Button variant="secondary" className="px-2 py-1 text-xs" onClick={() => setSelected(u)}>Credit</Button>
          <Button variant="secondary" className="px-2 py-1 text-xs" onClick={() => setConfirm({ user: u, action: "reset" })}>Reset password</Button>
          {u.is_active ? (
            <Button variant="danger" className="px-2 py-1 text-xs" onClick={() => setConfirm({ user: u, action: "deactivate" })}>Deactivate</Button>
          ) : (
            <Button variant="secondary" className="px-2 py-1 text-xs" onClick={() => setConfirm({ user: u, action: "reactivate" })}>Reactivate</Button>
          )}
        </div>
      ),
    },
  ];

  const labels = { deactivate: "Deactivate", reactivate: "Reactivate", reset: "Reset password" };
  return (
    <div>
      <PageHeader title="Users" subtitle="Search accounts, credit wallets, reset passwords, deactivate." />
      {tempPassword ? (
        <div className="mb-4">
          <Notice tone="warning">
            Temporary password for {tempPassword.email}: <code className="rounded bg-white px-1.5 py-0.5 font-mono" data-testid="temporary-password">{tempPassword.password}</code> — shown once; they must choose a new one when they log in.
          </Notice>
        </div>
      ) : null}
      <div className="grid gap-6 lg:grid-cols-3">
        <Card className="lg:col-span-2">
          <div className="mb-4 grid gap-3 sm:grid-cols-2">
            <TextField label="Search email or name" type="search" value={search} onChange={(e) => { setSearch(e.target.value); setOffset(0); }} />
            <Select label="Role" value={role} onChange={(e) => { setRole(e.target.value); setOffset(0); }}>
              <option value="">any</option>
              <option value="buyer">buyer</option>
              <option value="agent">operator</option>
              <option value="admin">admin</option>
            </Select>
          </div>
          {users.isPending ? <Loading /> : users.error ? <ErrorNote error={users.error} onRetry={() => users.refetch()} /> : (
            <DataTable label="Users" columns={columns} rows={users.data.items} rowKey={(u) => u.id} empty="No users match." paging={{ total: users.data.total, limit: USER_PAGE, offset, onOffset: setOffset }} />
          )}
        </Card>
        <Card title="Credit a wallet">
          {selected ? <CreditForm key={selected.id} user={selected} onDone={() => void queryClient.invalidateQueries({ queryKey: ["admin"] })} /> : <p className="text-sm text-slate-600">Choose “Credit” on a user.</p>}
        </Card>
      </div>
      <Confirm
        open={confirm !== null}
        title={confirm ? `${labels[confirm.action]} ${confirm.user.email}?` : ""}
        confirmLabel={confirm ? labels[confirm.action] : ""}
        danger={confirm?.action !== "reactivate"}
        busy={act.isPending}
        onClose={() => { setConfirm(null); act.reset(); }}
        onConfirm={() => confirm && act.mutate(confirm)}
      >
        {confirm?.action === "reset" ? "Their sessions end and a temporary password is shown to you once; they must set a new one at their next login." : confirm?.action === "deactivate" ? "Their tokens and API keys stop working at once." : "They can log in again."}
        {act.error ? <p role="alert" className="mt-2 text-rose-700">{errorText(act.error)}</p> : null}
      </Confirm>
    </div>
  );
}

type AgentStats = Schemas["AgentStatsRead"];

export function LeaderboardPage() {
  const board = useQuery({ queryKey: ["leaderboard"], queryFn: () => unwrap(client.GET("/api/v2/agents/leaderboard", { params: { query: { min_tasks: 0 } } })) });
  const columns: Column<AgentStats>[] = [
    { key: "rank", header: "#", render: (a) => (board.data?.indexOf(a) ?? 0) + 1, sort: (a) => board.data?.indexOf(a) ?? 0, align: "right" },
    { key: "name", header: "Agent", render: (a) => <span className="font-medium">{a.name}</span>, sort: (a) => a.name },
    { key: "tasks", header: "Tasks", render: (a) => a.tasks.toLocaleString("en-US"), sort: (a) => a.tasks, align: "right" },
    { key: "success", header: "Success", render: (a) => formatPercent(a.success_rate), sort: (a) => a.success_rate, align: "right" },
    { key: "reputation", header: "Reputation ×", render: (a) => a.reputation_multiplier.toFixed(1), sort: (a) => a.reputation_multiplier, align: "right" },
    { key: "earnings", header: "Earnings", render: (a) => formatSat(a.earnings_sat), sort: (a) => a.earnings_sat, align: "right" },
    { key: "p50", header: "p50 latency", render: (a) => formatMs(a.latency_p50_ms), sort: (a) => a.latency_p50_ms, align: "right" },
    { key: "p95", header: "p95 latency", render: (a) => formatMs(a.latency_p95_ms), sort: (a) => a.latency_p95_ms, align: "right" },
  ];
  return (
    <div>
      <PageHeader title="Agent leaderboard" subtitle="Ranked by smoothed success rate over the last finished tasks." />
      <Card>
        {board.isPending ? <Loading /> : board.error ? <ErrorNote error={board.error} onRetry={() => board.refetch()} /> : <DataTable label="Leaderboard" columns={columns} rows={board.data} rowKey={(a) => a.agent_id} empty="No agent has finished a task yet." />}
      </Card>
    </div>
  );
}

const EXPORTS = ["tasks", "results", "outcomes"] as const;

export function LedgerPage() {
  const check = useQuery({ queryKey: ["admin", "ledger"], queryFn: () => unwrap(client.GET("/api/v2/admin/ledger/check")), enabled: false });
  const [exportError, setExportError] = useState<unknown>(null);
  const [format, setFormat] = useState<"csv" | "jsonl">("csv");
  return (
    <div>
      <PageHeader title="Ledger and exports" subtitle="Recompute every balance from its entries; download the market's records." />
      <div className="grid gap-6 lg:grid-cols-2">
        <Card title="Ledger check" actions={<Button busy={check.isFetching} onClick={() => check.refetch()}>Run check</Button>}>
          {check.error ? <ErrorNote error={check.error} /> : check.data ? (
            <div className="space-y-3 text-sm">
              <Notice tone={check.data.ok ? "success" : "warning"}>{check.data.ok ? "Balanced: every cached balance equals its entries." : "Discrepancies found."}</Notice>
              <dl className="grid grid-cols-2 gap-2">
                <dt className="text-slate-600">Accounts</dt><dd>{check.data.accounts}</dd>
                <dt className="text-slate-600">Transactions</dt><dd>{check.data.transactions}</dd>
                <dt className="text-slate-600">Sum of entries</dt><dd>{formatSat(check.data.total_sat)}</dd>
              </dl>
              {check.data.discrepancies.length ? (
                <ul className="list-inside list-disc text-rose-800">
                  {check.data.discrepancies.map((d) => <li key={d.account_name}>{d.account_name}: cached {formatSat(d.cached_sat)}, entries {formatSat(d.entries_sat)}</li>)}
                </ul>
              ) : null}
              {check.data.unbalanced_transactions.length ? <p className="text-rose-800">Unbalanced transactions: {check.data.unbalanced_transactions.join(", ")}</p> : null}
            </div>
          ) : <p className="text-sm text-slate-600">Not run yet.</p>}
        </Card>
        <Card title="Exports">
          <div className="space-y-3">
            {exportError ? <ErrorNote error={exportError} /> : null}
            <Select label="Format" value={format} onChange={(e) => setFormat(e.target.value as "csv" | "jsonl")}>
              <option value="csv">CSV</option>
              <option value="jsonl">JSON Lines</option>
            </Select>
            <div className="flex flex-wrap gap-2">
              {EXPORTS.map((kind) => (
                <Button key={kind} variant="secondary" onClick={() => { setExportError(null); downloadFile(`/api/v2/admin/export/${kind}?format=${format}`, `${kind}.${format}`).catch(setExportError); }}>
                  Download {kind}
                </Button>
              ))}
            </div>
          </div>
        </Card>
      </div>
    </div>
  );
}
