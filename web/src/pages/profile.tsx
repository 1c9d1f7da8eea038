// Everyone: profile and password change. Buyer: wallet balance and spending over time.
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useState, type FormEvent } from "react";
import { Area, AreaChart, CartesianGrid, ResponsiveContainer, Tooltip, XAxis, YAxis } from "recharts";
import { Button, Card, ErrorNote, Loading, Notice, PageHeader, Stat, TextField } from "../components/ui";
import { client, unwrap } from "../lib/api";
import { useAuth } from "../lib/auth";
import { saveSession } from "../lib/session";
import { formatDate, formatSat } from "../lib/format";
import { fieldError, formError } from "../lib/useForm";

export function PasswordForm({ onDone, title = "Change password" }: { onDone?: () => void; title?: string }) {
  const queryClient = useQueryClient();
  const [current, setCurrent] = useState("");
  const [next, setNext] = useState("");
  const mutation = useMutation({
    mutationFn: () => unwrap(client.POST("/api/v2/users/me/password", { body: { current_password: current, new_password: next } })),
    onSuccess: (tokens) => {
      // the change ends every session; the response is this tab's new one
      saveSession({ accessToken: tokens.access_token, refreshToken: tokens.refresh_token });
      setCurrent("");
      setNext("");
      void queryClient.invalidateQueries({ queryKey: ["me"] });
      onDone?.();
    },
  });
  function submit(event: FormEvent) {
    event.preventDefault();
    mutation.mutate();
  }
  return (
    <Card title={title}>
      <form onSubmit={submit} className="space-y-4" noValidate>
        {mutation.error ? <p role="alert" className="rounded-md bg-rose-50 px-3 py-2 text-sm text-rose-800">{formError(mutation.error)}</p> : null}
        {mutation.isSuccess ? <Notice tone="success">Password changed; your other sessions were ended.</Notice> : null}
        <TextField label="Current password" type="password" autoComplete="current-password" value={current} onChange={(e) => setCurrent(e.target.value)} error={fieldError(mutation.error, "current_password")} />
        <TextField label="New password" type="password" autoComplete="new-password" value={next} onChange={(e) => setNext(e.target.value)} error={fieldError(mutation.error, "new_password")} hint="At least 8 characters." />
        <Button type="submit" busy={mutation.isPending}>Change password</Button>
      </form>
    </Card>
  );
}

export function ProfilePage() {
  const { profile } = useAuth();
  const queryClient = useQueryClient();
  const [name, setName] = useState<string | null>(null);
  const save = useMutation({
    mutationFn: () => unwrap(client.PATCH("/api/v2/users/me", { body: { display_name: name ?? "" } })),
    onSuccess: (data) => {
      queryClient.setQueryData(["me"], data);
      setName(null);
    },
  });
  if (!profile) return <Loading />;
  return (
    <div>
      <PageHeader title="Profile" subtitle={`${profile.email} · member since ${formatDate(profile.created_at)}`} />
      <div className="grid gap-6 lg:grid-cols-2">
        <Card title="Your details">
          <form className="space-y-4" onSubmit={(e) => { e.preventDefault(); save.mutate(); }} noValidate>
            {save.error ? <p role="alert" className="rounded-md bg-rose-50 px-3 py-2 text-sm text-rose-800">{formError(save.error)}</p> : null}
            {save.isSuccess && name === null ? <Notice tone="success">Saved.</Notice> : null}
            <TextField label="Display name" value={name ?? profile.display_name} onChange={(e) => setName(e.target.value)} error={fieldError(save.error, "display_name")} />
            <dl className="grid grid-cols-2 gap-2 text-sm">
              <dt className="text-slate-600">Role</dt>
              <dd>{profile.role === "agent" ? "agent operator" : profile.role}</dd>
              <dt className="text-slate-600">Wallet</dt>
              <dd>{formatSat(profile.balance_sat)}</dd>
            </dl>
            <Button type="submit" busy={save.isPending} disabled={name === null}>Save</Button>
          </form>
        </Card>
        <PasswordForm />
      </div>
    </div>
  );
}

export function WalletPage() {
  const { profile } = useAuth();
  const tasks = useQuery({
    queryKey: ["tasks", { wallet: true }],
    queryFn: () => unwrap(client.GET("/api/v2/tasks", { params: { query: { limit: 500 } } })),
  });
  if (!profile) return <Loading />;
  const charged = (tasks.data?.items ?? []).filter((t) => ["delivered", "completed"].includes(t.status) || ["created", "assigned", "executing"].includes(t.status));
  const byDay = new Map<string, number>();
  for (const t of charged) {
    const day = t.created_at.slice(0, 10);
    byDay.set(day, (byDay.get(day) ?? 0) + t.price_sat);
  }
  const days = [...byDay.entries()].sort(([a], [b]) => (a < b ? -1 : 1));
  const series = days.map(([day, sat], i) => ({ day, spent: sat, cumulative: days.slice(0, i + 1).reduce((sum, [, s]) => sum + s, 0) }));
  const settled = (tasks.data?.items ?? []).filter((t) => t.status === "completed").reduce((sum, t) => sum + t.price_sat, 0);
  const held = (tasks.data?.items ?? []).filter((t) => ["created", "assigned", "executing", "delivered"].includes(t.status)).reduce((sum, t) => sum + t.escrow_sat, 0);
  return (
    <div>
      <PageHeader title="Wallet" subtitle="Your balance, what is held in escrow and what you spent." />
      <div className="mb-6 grid gap-4 sm:grid-cols-3">
        <Stat label="Balance" value={formatSat(profile.balance_sat)} />
        <Stat label="In escrow" value={formatSat(held)} hint="open tasks" />
        <Stat label="Paid to agents" value={formatSat(settled)} hint="accepted tasks" />
      </div>
      <Card title="Spending over time">
        {tasks.isPending ? <Loading /> : tasks.error ? <ErrorNote error={tasks.error} /> : series.length === 0 ? (
          <p className="text-sm text-slate-600">No spending yet.</p>
        ) : (
          <div className="h-72" role="img" aria-label="Cumulative spending by day">
            <ResponsiveContainer width="100%" height="100%">
              <AreaChart data={series} margin={{ left: 16, right: 8, top: 8 }}>
                <CartesianGrid strokeDasharray="3 3" stroke="#e2e8f0" />
                <XAxis dataKey="day" tick={{ fontSize: 12 }} />
                <YAxis tick={{ fontSize: 12 }} tickFormatter={(v: number) => v.toLocaleString("en-US")} />
                <Tooltip formatter={(v) => formatSat(Number(v))} />
                <Area type="monotone" dataKey="cumulative" name="spent (cumulative)" stroke="#4f46e5" fill="#c7d2fe" />
              </AreaChart>
            </ResponsiveContainer>
          </div>
        )}
      </Card>
    </div>
  );
}
