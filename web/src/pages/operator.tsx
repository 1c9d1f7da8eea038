// Agent operator: my agents (create, edit, enable/disable, stats, the tasks they ran), API keys,
// and the human agent's inbox (claim, answer, submit, release).
import { keepPreviousData, useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useState, type FormEvent } from "react";
import { Link, useNavigate, useParams } from "react-router";
import { Confirm } from "../components/Confirm";
import { DataTable, type Column } from "../components/DataTable";
import { EARNED, MoneyChart } from "../components/MoneyChart";
import { SuccessChart } from "../components/SuccessChart";
import { Badge, Button, Card, ErrorNote, Loading, Notice, PageHeader, Select, Stat, TextArea, TextField, Thumb } from "../components/ui";
import { client, errorText, unwrap, type Schemas } from "../lib/api";
import { useAuth } from "../lib/auth";
import { formatDate, formatMs, formatPercent, formatSat, shortId } from "../lib/format";
import { fieldError, formError } from "../lib/useForm";
import { TaskFiles } from "./tasks";

type Agent = Schemas["AgentRead"];

function useMyAgents() {
  const { profile } = useAuth();
  const admin = profile?.role === "admin";
  return useQuery({
    queryKey: ["agents", admin ? "all" : "mine"],
    queryFn: () => (admin ? unwrap(client.GET("/api/v2/agents")) : unwrap(client.GET("/api/v2/operator/agents"))),
  });
}

function CreateAgent({ onCreated }: { onCreated: (agent: Schemas["AgentDetail"]) => void }) {
  const [form, setForm] = useState({ name: "", kind: "human", description: "", base_price_sat: "", base_url: "", model: "", api_key: "", system_prompt: "" });
  const create = useMutation({
    mutationFn: () =>
      unwrap(
        client.POST("/api/v2/agents", {
          body: {
            name: form.name,
            kind: form.kind as "human" | "llm",
            description: form.description,
            base_price_sat: form.base_price_sat ? Number(form.base_price_sat) : null,
            llm: form.kind === "llm" ? { base_url: form.base_url, model: form.model, api_key: form.api_key || null, system_prompt: form.system_prompt } : null,
          },
        }),
      ),
    onSuccess: onCreated,
  });
  const set = (key: keyof typeof form) => (e: { target: { value: string } }) => setForm({ ...form, [key]: e.target.value });
  function submit(event: FormEvent) {
    event.preventDefault();
    create.mutate();
  }
  return (
    <form onSubmit={submit} className="space-y-4" noValidate>
      {create.error ? <p role="alert" className="rounded-md bg-rose-50 px-3 py-2 text-sm text-rose-800">{formError(create.error)}</p> : null}
      <TextField label="Name" name="name" value={form.name} onChange={set("name")} error={fieldError(create.error, "name")} />
      <Select label="Kind" name="kind" value={form.kind} onChange={set("kind")} error={fieldError(create.error, "kind")}>
        <option value="human">human (answers from the inbox)</option>
        <option value="llm">llm (OpenAI-compatible endpoint)</option>
      </Select>
      <TextArea label="Description" name="description" value={form.description} onChange={set("description")} error={fieldError(create.error, "description")} />
      <TextField label="Base price (sat)" type="number" min={1} name="base_price_sat" value={form.base_price_sat} onChange={set("base_price_sat")} error={fieldError(create.error, "base_price_sat")} hint="Price = base × complexity × reputation multiplier. Empty: the market default." />
      {form.kind === "llm" ? (
        <>
          <TextField label="Base URL" name="base_url" placeholder="https://api.example.com/v1" value={form.base_url} onChange={set("base_url")} error={fieldError(create.error, "base_url")} />
          <TextField label="Model" name="model" value={form.model} onChange={set("model")} error={fieldError(create.error, "model")} />
          <TextField label="API key" type="password" name="api_key" autoComplete="off" value={form.api_key} onChange={set("api_key")} error={fieldError(create.error, "api_key")} hint="Stored encrypted; only its last 4 characters are shown." />
          <TextArea label="System prompt" name="system_prompt" value={form.system_prompt} onChange={set("system_prompt")} error={fieldError(create.error, "system_prompt")} />
        </>
      ) : null}
      <Button type="submit" busy={create.isPending}>Create agent</Button>
    </form>
  );
}

export function AgentsPage() {
  const agents = useMyAgents();
  const navigate = useNavigate();
  const queryClient = useQueryClient();
  const { profile } = useAuth();
  const columns: Column<Agent>[] = [
    { key: "name", header: "Agent", render: (a) => <Link to={`/agents/${a.id}`} className="font-medium text-indigo-700 hover:underline">{a.name}</Link>, sort: (a) => a.name },
    { key: "kind", header: "Kind", render: (a) => a.kind, sort: (a) => a.kind },
    { key: "state", header: "State", render: (a) => <Badge tone={a.is_enabled ? "completed" : "cancelled"}>{a.is_enabled ? "enabled" : "disabled"}</Badge>, sort: (a) => (a.is_enabled ? 1 : 0) },
    { key: "price", header: "Base price", render: (a) => formatSat(a.base_price_sat), sort: (a) => a.base_price_sat, align: "right" },
    { key: "tasks", header: "Finished", render: (a) => a.finished_tasks, sort: (a) => a.finished_tasks, align: "right" },
    { key: "success", header: "Success", render: (a) => formatPercent(a.success_rate), sort: (a) => a.success_rate, align: "right" },
    { key: "rep", header: "Reputation ×", render: (a) => a.reputation_multiplier.toFixed(1), sort: (a) => a.reputation_multiplier, align: "right" },
  ];
  return (
    <div>
      <PageHeader title={profile?.role === "admin" ? "All agents" : "My agents"} subtitle="Register agents, set their price, take them on and off the market." />
      <div className="grid gap-6 lg:grid-cols-3">
        <Card className="lg:col-span-2">
          {agents.isPending ? <Loading /> : agents.error ? <ErrorNote error={agents.error} onRetry={() => agents.refetch()} /> : <DataTable label="Agents" columns={columns} rows={agents.data} rowKey={(a) => a.id} empty="No agents yet: create one." />}
        </Card>
        <Card title="New agent">
          <CreateAgent
            onCreated={(agent) => {
              void queryClient.invalidateQueries({ queryKey: ["agents"] });
              navigate(`/agents/${agent.id}`);
            }}
          />
        </Card>
      </div>
      {profile?.role === "agent" ? (
        <Card title="Earnings over time" className="mt-6">
          <MoneyChart measure={EARNED} title="All my agents earned" />
        </Card>
      ) : null}
    </div>
  );
}

type AgentTask = Schemas["AgentTaskRead"];

/** Send a probe through an llm agent's endpoint (no task, no money) and show what came back. */
function TestCall({ agentId }: { agentId: string }) {
  const [prompt, setPrompt] = useState("Reply with the single word OK.");
  const call = useMutation({
    mutationFn: () => unwrap(client.POST("/api/v2/agents/{agent_id}/test-call", { params: { path: { agent_id: agentId } }, body: { prompt, max_tokens: 32 } })),
  });
  const result = call.data;
  return (
    <Card title="Test call">
      <form className="space-y-3" onSubmit={(e) => { e.preventDefault(); call.mutate(); }} noValidate>
        <p className="text-sm text-slate-600">Sends one short request through the agent’s endpoint, as a runner would; no task is created and nothing is charged.</p>
        {call.error ? <p role="alert" className="rounded-md bg-rose-50 px-3 py-2 text-sm text-rose-800">{formError(call.error)}</p> : null}
        <TextField label="Probe prompt" name="probe" value={prompt} onChange={(e) => setPrompt(e.target.value)} error={fieldError(call.error, "prompt")} />
        <Button type="submit" variant="secondary" busy={call.isPending}>Send test call</Button>
        {result ? (
          <div aria-live="polite" data-testid="test-call-result" className={`rounded-md px-3 py-2 text-sm ring-1 ${result.ok ? "bg-emerald-50 text-emerald-900 ring-emerald-200" : "bg-rose-50 text-rose-900 ring-rose-200"}`}>
            <p className="font-medium">{result.ok ? "Answered" : "Failed"} in {formatMs(result.latency_ms)}{result.model ? ` · ${result.model}` : ""}</p>
            {result.text ? <pre tabIndex={0} aria-label="The test call’s answer" className="mt-1 max-h-40 overflow-auto whitespace-pre-wrap font-sans">{result.text}</pre> : null}
            {result.error ? <p className="mt-1 break-words">{result.error}</p> : null}
          </div>
        ) : null}
      </form>
    </Card>
  );
}

export function AgentPage() {
  const { agentId = "" } = useParams();
  const queryClient = useQueryClient();
  const { profile } = useAuth();
  const path = { params: { path: { agent_id: agentId } } };
  const agent = useQuery({ queryKey: ["agent", agentId], queryFn: () => unwrap(client.GET("/api/v2/agents/{agent_id}", path)) });
  const stats = useQuery({ queryKey: ["agent", agentId, "stats"], queryFn: () => unwrap(client.GET("/api/v2/agents/{agent_id}/stats", path)) });
  const [offset, setOffset] = useState(0);
  const tasks = useQuery({
    queryKey: ["tasks", "agent", agentId, offset],
    queryFn: () => unwrap(client.GET("/api/v2/operator/tasks", { params: { query: { agent_id: agentId, limit: 25, offset } } })),
    placeholderData: keepPreviousData,
  });
  const [edit, setEdit] = useState<{ description: string; base_price_sat: string } | null>(null);
  const [confirmDisable, setConfirmDisable] = useState(false);
  const refresh = () => {
    void queryClient.invalidateQueries({ queryKey: ["agent", agentId] });
    void queryClient.invalidateQueries({ queryKey: ["agents"] });
  };
  const save = useMutation({
    mutationFn: () => unwrap(client.PATCH("/api/v2/agents/{agent_id}", { ...path, body: { description: edit?.description, base_price_sat: edit?.base_price_sat ? Number(edit.base_price_sat) : undefined } })),
    onSuccess: () => {
      setEdit(null);
      refresh();
    },
  });
  const toggle = useMutation({
    mutationFn: (enable: boolean) => (enable ? unwrap(client.POST("/api/v2/agents/{agent_id}/enable", path)) : unwrap(client.POST("/api/v2/agents/{agent_id}/disable", path))),
    onSuccess: () => {
      setConfirmDisable(false);
      refresh();
    },
  });

  if (agent.isPending) return <Loading />;
  if (agent.error) return <ErrorNote error={agent.error} onRetry={() => agent.refetch()} />;
  const a = agent.data;
  const config = "config" in a ? (a.config as Record<string, unknown>) : {};
  const columns: Column<AgentTask>[] = [
    { key: "description", header: "Task", render: (t) => <span className="line-clamp-2 max-w-sm">{t.description}</span>, sort: (t) => t.description },
    { key: "status", header: "Status", render: (t) => <Badge>{t.status}</Badge>, sort: (t) => t.status },
    { key: "outcome", header: "Outcome", render: (t) => (t.success === null || t.success === undefined ? "—" : `${t.success ? "success" : "failure"} (${formatPercent(t.quality ?? null, 0)})`), sort: (t) => t.quality },
    { key: "rating", header: "Rating", render: (t) => (t.rating ? "★".repeat(t.rating) : t.thumbs_up === true ? <span className="inline-flex items-center gap-1 text-emerald-700"><Thumb /> good</span> : t.thumbs_up === false ? <span className="inline-flex items-center gap-1 text-rose-700"><Thumb down /> bad</span> : "—"), sort: (t) => t.rating },
    { key: "reason", header: "Rejection reason", render: (t) => t.rejection_reason ?? "—" },
    { key: "price", header: "Price", render: (t) => formatSat(t.price_sat), sort: (t) => t.price_sat, align: "right" },
    { key: "created", header: "Created", render: (t) => formatDate(t.created_at), sort: (t) => t.created_at },
  ];
  return (
    <div className="space-y-6">
      <PageHeader
        title={a.name}
        subtitle={<span className="flex items-center gap-2">{a.kind} agent <Badge tone={a.is_enabled ? "completed" : "cancelled"}>{a.is_enabled ? "enabled" : "disabled"}</Badge></span>}
        actions={
          a.is_enabled ? <Button variant="danger" onClick={() => setConfirmDisable(true)}>Disable</Button> : <Button busy={toggle.isPending} onClick={() => toggle.mutate(true)}>Enable</Button>
        }
      />
      {toggle.error ? <ErrorNote error={toggle.error} /> : null}
      <div className="grid grid-cols-2 gap-4 lg:grid-cols-5">
        <Stat label="Finished tasks" value={stats.data?.tasks ?? a.finished_tasks} />
        <Stat label="Success rate" value={stats.data && stats.data.tasks === 0 ? "—" : formatPercent(stats.data?.success_rate ?? a.success_rate)} hint={stats.data && stats.data.tasks === 0 ? `priced at the prior ${formatPercent(a.success_rate, 0)}` : undefined} />
        <Stat label="Reputation ×" value={(stats.data?.reputation_multiplier ?? a.reputation_multiplier).toFixed(1)} />
        <Stat label="Earnings" value={formatSat(stats.data?.earnings_sat ?? 0)} />
        <Stat label="Latency p50 / p95" value={`${formatMs(stats.data?.latency_p50_ms)} / ${formatMs(stats.data?.latency_p95_ms)}`} />
      </div>
      <div className="grid gap-6 lg:grid-cols-3">
        <div className="min-w-0 space-y-6">
        <Card title="Settings">
          <form className="space-y-4" onSubmit={(e) => { e.preventDefault(); save.mutate(); }} noValidate>
            {save.error ? <p role="alert" className="rounded-md bg-rose-50 px-3 py-2 text-sm text-rose-800">{formError(save.error)}</p> : null}
            {save.isSuccess && !edit ? <Notice tone="success">Saved.</Notice> : null}
            <TextArea label="Description" value={edit?.description ?? a.description} onChange={(e) => setEdit({ description: e.target.value, base_price_sat: edit?.base_price_sat ?? String(a.base_price_sat) })} error={fieldError(save.error, "description")} />
            <TextField label="Base price (sat)" type="number" min={1} value={edit?.base_price_sat ?? String(a.base_price_sat)} onChange={(e) => setEdit({ description: edit?.description ?? a.description, base_price_sat: e.target.value })} error={fieldError(save.error, "base_price_sat")} />
            {a.kind === "llm" ? (
              <dl className="grid grid-cols-2 gap-1 text-sm">
                <dt className="text-slate-600">Endpoint</dt><dd className="truncate">{String(config.base_url ?? "—")}</dd>
                <dt className="text-slate-600">Model</dt><dd>{String(config.model ?? "—")}</dd>
                <dt className="text-slate-600">API key</dt><dd>{config.has_api_key ? `…${String(config.api_key_last4 ?? "")}` : "none"}</dd>
              </dl>
            ) : null}
            <Button type="submit" disabled={!edit} busy={save.isPending}>Save</Button>
          </form>
        </Card>
        {a.kind === "llm" && "owner_id" in a && a.owner_id === profile?.id ? <TestCall agentId={a.id} /> : null}
        </div>
        <div className="min-w-0 space-y-6 lg:col-span-2">
          <Card title="Earnings over time">
            <MoneyChart measure={EARNED} agentId={a.id} title="Earned" />
          </Card>
          <Card title="Success rate over time">
            <SuccessChart agentId={a.id} />
          </Card>
          <Card title="Tasks this agent ran">
            {tasks.isPending ? <Loading /> : tasks.error ? <ErrorNote error={tasks.error} /> : <DataTable label="Tasks of this agent" columns={columns} rows={tasks.data.items} rowKey={(t) => t.id} empty="No task yet." paging={{ total: tasks.data.total, limit: 25, offset, onOffset: setOffset }} />}
          </Card>
        </div>
      </div>
      <Confirm open={confirmDisable} title={`Disable ${a.name}?`} confirmLabel="Disable" danger busy={toggle.isPending} onClose={() => setConfirmDisable(false)} onConfirm={() => toggle.mutate(false)}>
        Its queued tasks move to the best other agent within each buyer’s budget, or are refunded; a task it is executing finishes.
      </Confirm>
    </div>
  );
}

export function ApiKeysPage() {
  const queryClient = useQueryClient();
  const keys = useQuery({ queryKey: ["api-keys"], queryFn: () => unwrap(client.GET("/api/v2/api-keys")) });
  const [name, setName] = useState("");
  const [created, setCreated] = useState<Schemas["ApiKeyCreated"] | null>(null);
  const [revoking, setRevoking] = useState<Schemas["ApiKeyRead"] | null>(null);
  const create = useMutation({
    mutationFn: () => unwrap(client.POST("/api/v2/api-keys", { body: { name } })),
    onSuccess: (key) => {
      setCreated(key);
      setName("");
      void queryClient.invalidateQueries({ queryKey: ["api-keys"] });
    },
  });
  const revoke = useMutation({
    mutationFn: (id: string) => unwrap(client.DELETE("/api/v2/api-keys/{key_id}", { params: { path: { key_id: id } } })),
    onSuccess: () => {
      setRevoking(null);
      void queryClient.invalidateQueries({ queryKey: ["api-keys"] });
    },
  });
  const columns: Column<Schemas["ApiKeyRead"]>[] = [
    { key: "name", header: "Name", render: (k) => <span className="font-medium">{k.name}</span>, sort: (k) => k.name },
    { key: "prefix", header: "Key", render: (k) => <code className="font-mono text-xs">{k.prefix}…</code> },
    { key: "created", header: "Created", render: (k) => formatDate(k.created_at), sort: (k) => k.created_at },
    { key: "used", header: "Last used", render: (k) => formatDate(k.last_used_at), sort: (k) => k.last_used_at },
    { key: "state", header: "State", render: (k) => <Badge tone={k.revoked_at ? "cancelled" : "completed"}>{k.revoked_at ? "revoked" : "active"}</Badge> },
    { key: "act", header: "", render: (k) => (k.revoked_at ? null : <Button variant="danger" className="px-2 py-1 text-xs" onClick={() => setRevoking(k)}>Revoke</Button>) },
  ];
  return (
    <div>
      <PageHeader title="API keys" subtitle="Keys for runners that execute your agents’ tasks (dukenet runner --api-key)." />
      {created ? (
        <div className="mb-6">
          <Notice tone="warning">
            <p className="font-medium">Copy the key “{created.name}” now: it is shown only once.</p>
            <code className="mt-2 block break-all rounded bg-white px-2 py-1.5 font-mono text-sm" data-testid="new-api-key">{created.key}</code>
            <Button variant="secondary" className="mt-2" onClick={() => void navigator.clipboard?.writeText(created.key)}>Copy</Button>
          </Notice>
        </div>
      ) : null}
      <div className="grid gap-6 lg:grid-cols-3">
        <Card className="lg:col-span-2">
          {keys.isPending ? <Loading /> : keys.error ? <ErrorNote error={keys.error} onRetry={() => keys.refetch()} /> : <DataTable label="API keys" columns={columns} rows={keys.data} rowKey={(k) => k.id} empty="No API keys yet." />}
        </Card>
        <Card title="New key">
          <form className="space-y-4" onSubmit={(e) => { e.preventDefault(); setCreated(null); create.mutate(); }} noValidate>
            {create.error ? <p role="alert" className="rounded-md bg-rose-50 px-3 py-2 text-sm text-rose-800">{formError(create.error)}</p> : null}
            <TextField label="Key name" name="key-name" value={name} onChange={(e) => setName(e.target.value)} error={fieldError(create.error, "name")} hint="e.g. the machine the runner is on." />
            <Button type="submit" busy={create.isPending}>Create key</Button>
          </form>
        </Card>
      </div>
      <Confirm open={revoking !== null} title={`Revoke “${revoking?.name ?? ""}”?`} confirmLabel="Revoke" danger busy={revoke.isPending} onClose={() => setRevoking(null)} onConfirm={() => revoking && revoke.mutate(revoking.id)}>
        Runners using it stop at once.
        {revoke.error ? <p role="alert" className="mt-2 text-rose-700">{errorText(revoke.error)}</p> : null}
      </Confirm>
    </div>
  );
}

function withoutKey<T>(record: Record<string, T>, key: string): Record<string, T> {
  const copy = { ...record };
  delete copy[key];
  return copy;
}

interface Claimed {
  claim: Schemas["ClaimRead"];
  answer: string;
  success: boolean;
}

export function InboxPage() {
  const queryClient = useQueryClient();
  const inbox = useQuery({ queryKey: ["inbox"], queryFn: () => unwrap(client.GET("/api/v2/runner/inbox", { params: { query: { limit: 100 } } })) });
  const [claimed, setClaimed] = useState<Record<string, Claimed>>({});
  const [message, setMessage] = useState<string | null>(null);
  const refresh = () => {
    void queryClient.invalidateQueries({ queryKey: ["inbox"] });
    void queryClient.invalidateQueries({ queryKey: ["tasks"] });
  };
  const claim = useMutation({
    mutationFn: (taskId: string) => unwrap(client.POST("/api/v2/runner/claim", { body: { task_id: taskId, runner: "web inbox" } })),
    onSuccess: (c) => {
      if (c) setClaimed((all) => ({ ...all, [c.task_id]: { claim: c, answer: "", success: true } }));
      refresh();
    },
  });
  const submit = useMutation({
    mutationFn: (c: Claimed) =>
      unwrap(
        client.POST("/api/v2/runner/tasks/{task_id}/result", {
          params: { path: { task_id: c.claim.task_id } },
          body: { lease_token: c.claim.lease_token, idempotency_key: `${c.claim.task_id}:${c.claim.attempt}`, text: c.answer, success: c.success },
        }),
      ),
    onSuccess: (_, c) => {
      setClaimed((all) => withoutKey(all, c.claim.task_id));
      setMessage(`Answer submitted for task ${shortId(c.claim.task_id)}.`);
      refresh();
    },
  });
  const release = useMutation({
    mutationFn: (c: Claimed) => unwrap(client.POST("/api/v2/runner/tasks/{task_id}/release", { params: { path: { task_id: c.claim.task_id }, query: { lease_token: c.claim.lease_token } } })),
    onSuccess: (_, c) => {
      setClaimed((all) => withoutKey(all, c.claim.task_id));
      setMessage(`Task ${shortId(c.claim.task_id)} released.`);
      refresh();
    },
  });
  const error = claim.error ?? submit.error ?? release.error;
  return (
    <div>
      <PageHeader title="Inbox" subtitle="Work assigned to your human agents: claim a task, write the answer, submit it (or release it for another agent)." />
      {message ? <div className="mb-4"><Notice tone="success">{message}</Notice></div> : null}
      {error ? <div className="mb-4"><ErrorNote error={error} /></div> : null}
      {inbox.isPending ? <Loading /> : inbox.error ? <ErrorNote error={inbox.error} onRetry={() => inbox.refetch()} /> : inbox.data.items.length === 0 ? (
        <Card><p className="text-sm text-slate-600">Nothing to do: new tasks for your agents appear here as they are assigned.</p></Card>
      ) : (
        <ul className="space-y-4" aria-label="Inbox">
          {inbox.data.items.map((item) => {
            const mine = claimed[item.id];
            return (
              <li key={item.id}>
                <Card title={<span className="flex items-center gap-2">Task {shortId(item.id)} <Badge>{item.status}</Badge></span>} actions={<span className="text-sm text-slate-600">complexity {item.complexity} · {formatSat(item.price_sat)} · attempt {item.attempts + (mine ? 0 : 1)}/{item.max_attempts}</span>}>
                  <p className="whitespace-pre-wrap text-sm text-slate-800">{item.description}</p>
                  {mine ? (
                    <form className="mt-4 space-y-3" onSubmit={(e) => { e.preventDefault(); submit.mutate(mine); }}>
                      {mine.claim.file_ids.length ? <TaskFiles fileIds={mine.claim.file_ids} taskId={mine.claim.task_id} /> : null}
                      {mine.claim.context ? <details className="text-sm"><summary className="cursor-pointer text-indigo-700">Attached file context</summary><pre tabIndex={0} aria-label="Attached file context" className="mt-2 max-h-48 overflow-auto whitespace-pre-wrap rounded bg-slate-50 p-2 text-xs">{mine.claim.context}</pre></details> : null}
                      <TextArea label="Your answer" value={mine.answer} onChange={(e) => setClaimed({ ...claimed, [item.id]: { ...mine, answer: e.target.value } })} hint={`Lease until ${formatDate(mine.claim.lease_expires_at)}.`} />
                      <label className="flex items-center gap-2 text-sm">
                        <input type="checkbox" checked={mine.success} onChange={(e) => setClaimed({ ...claimed, [item.id]: { ...mine, success: e.target.checked } })} className="h-4 w-4 accent-indigo-600" />
                        I completed the task
                      </label>
                      <div className="flex gap-2">
                        <Button type="submit" busy={submit.isPending} disabled={!mine.answer.trim()}>Submit answer</Button>
                        <Button variant="secondary" busy={release.isPending} onClick={() => release.mutate(mine)}>Release</Button>
                      </div>
                    </form>
                  ) : item.status === "assigned" ? (
                    <Button className="mt-4" busy={claim.isPending && claim.variables === item.id} onClick={() => claim.mutate(item.id)}>Claim</Button>
                  ) : (
                    <p className="mt-3 text-xs text-slate-600">Claimed elsewhere; the lease ends {formatDate(item.lease_expires_at)}.</p>
                  )}
                </Card>
              </li>
            );
          })}
        </ul>
      )}
    </div>
  );
}
