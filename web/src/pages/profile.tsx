// Everyone: profile and password change. Buyer: wallet balance and spending over time.
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useState, type FormEvent } from "react";
import { MoneyChart, SPENT } from "../components/MoneyChart";
import { Button, Card, Loading, Notice, PageHeader, Stat, TextField } from "../components/ui";
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
        <MoneyChart measure={SPENT} title="Spent" />
      </Card>
      <p className="mt-3 text-xs text-slate-600">From the ledger: what your wallet put into task escrows, less what came back (cancelled, failed or rejected tasks).</p>
    </div>
  );
}
