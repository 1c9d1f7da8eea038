// Buyer: the live task list, creating a task from a quote, and one task's page.
import { keepPreviousData, useMutation, useQueries, useQuery, useQueryClient } from "@tanstack/react-query";
import { useState, type FormEvent } from "react";
import { Link, useNavigate, useParams } from "react-router";
import { DataTable, type Column } from "../components/DataTable";
import { FileDrop } from "../components/FileDrop";
import { Badge, Button, Card, ErrorNote, Loading, Notice, PageHeader, Select, TextArea, TextField, Thumb } from "../components/ui";
import { client, errorText, unwrap, type Schemas } from "../lib/api";
import { downloadFile } from "../lib/download";
import { useAuth } from "../lib/auth";
import { formatBytes, formatDate, formatMs, formatPercent, formatSat, shortId } from "../lib/format";
import { fieldError, formError } from "../lib/useForm";

type Task = Schemas["TaskRead"];
type Quote = Schemas["QuoteRead"];
type Status = Schemas["TaskStatus"];

const STATUSES: Status[] = ["created", "assigned", "executing", "delivered", "completed", "rejected", "failed", "cancelled"];
const PAGE = 25;

export function useAgents() {
  return useQuery({ queryKey: ["agents"], queryFn: () => unwrap(client.GET("/api/v2/agents")) });
}

function agentName(agents: Schemas["AgentRead"][] | undefined, id: string | null | undefined): string {
  if (!id) return "—";
  return agents?.find((a) => a.id === id)?.name ?? shortId(id);
}

export function TaskListPage() {
  const [status, setStatus] = useState<Status | "">("");
  const [offset, setOffset] = useState(0);
  const navigate = useNavigate();
  const { profile } = useAuth();
  const agents = useAgents();
  const tasks = useQuery({
    queryKey: ["tasks", { status, offset }],
    queryFn: () => unwrap(client.GET("/api/v2/tasks", { params: { query: { status: status || undefined, limit: PAGE, offset } } })),
    placeholderData: keepPreviousData,
  });

  const columns: Column<Task>[] = [
    { key: "description", header: "Task", render: (t) => <Link to={`/tasks/${t.id}`} className="line-clamp-2 max-w-md font-medium text-indigo-700 hover:underline">{t.description}</Link>, sort: (t) => t.description.toLowerCase() },
    { key: "status", header: "Status", render: (t) => <Badge>{t.status}</Badge>, sort: (t) => t.status },
    { key: "agent", header: "Agent", render: (t) => agentName(agents.data, t.agent_id), sort: (t) => agentName(agents.data, t.agent_id) },
    { key: "complexity", header: "Complexity", render: (t) => t.complexity, sort: (t) => t.complexity, align: "right" },
    { key: "price", header: "Price", render: (t) => formatSat(t.price_sat), sort: (t) => t.price_sat, align: "right" },
    { key: "created", header: "Created", render: (t) => formatDate(t.created_at), sort: (t) => t.created_at },
  ];

  return (
    <div>
      <PageHeader
        title={profile?.role === "admin" ? "All tasks" : "My tasks"}
        subtitle="Updates live as agents pick up and deliver work."
        actions={profile?.role === "buyer" ? <Button onClick={() => navigate("/tasks/new")}>New task</Button> : null}
      />
      <Card>
        <div className="mb-4 max-w-xs">
          <Select label="Status" value={status} onChange={(e) => { setStatus(e.target.value as Status | ""); setOffset(0); }}>
            <option value="">any</option>
            {STATUSES.map((s) => (
              <option key={s} value={s}>{s}</option>
            ))}
          </Select>
        </div>
        {tasks.isPending ? <Loading /> : tasks.error ? <ErrorNote error={tasks.error} onRetry={() => tasks.refetch()} /> : (
          <DataTable
            label="Tasks"
            columns={columns}
            rows={tasks.data.items}
            rowKey={(t) => t.id}
            empty={<span>No tasks yet. {profile?.role === "buyer" ? <Link className="text-indigo-700 underline" to="/tasks/new">Create your first task</Link> : null}</span>}
            paging={{ total: tasks.data.total, limit: PAGE, offset, onOffset: setOffset }}
          />
        )}
      </Card>
    </div>
  );
}

interface Draft {
  description: string;
  complexity: number;
  max_price_sat: string;
  cost_weight: string;
  agent_id: string;
  exclude_agent_ids: string[];
}

function toRequest(draft: Draft): Schemas["TaskQuoteRequest"] {
  return {
    description: draft.description,
    complexity: draft.complexity,
    max_price_sat: draft.max_price_sat ? Number(draft.max_price_sat) : null,
    cost_weight: draft.cost_weight ? Number(draft.cost_weight) : null,
    agent_id: draft.agent_id || null,
    exclude_agent_ids: draft.exclude_agent_ids,
  };
}

export function NewTaskPage() {
  const navigate = useNavigate();
  const queryClient = useQueryClient();
  const agents = useAgents();
  const [draft, setDraft] = useState<Draft>({ description: "", complexity: 3, max_price_sat: "", cost_weight: "0.1", agent_id: "", exclude_agent_ids: [] });
  const [fileIds, setFileIds] = useState<string[]>([]);
  const [quote, setQuote] = useState<Quote | null>(null);
  const [idempotencyKey] = useState(() => crypto.randomUUID());

  const quoteMutation = useMutation({
    mutationFn: () => unwrap(client.POST("/api/v2/tasks/quote", { body: toRequest(draft) })),
    onSuccess: setQuote,
  });
  const createMutation = useMutation({
    mutationFn: () => unwrap(client.POST("/api/v2/tasks", { body: { ...toRequest(draft), file_ids: fileIds, idempotency_key: idempotencyKey } })),
    onSuccess: (task) => {
      void queryClient.invalidateQueries({ queryKey: ["tasks"] });
      void queryClient.invalidateQueries({ queryKey: ["me"] });
      navigate(`/tasks/${task.id}`);
    },
  });

  function change(patch: Partial<Draft>) {
    setDraft({ ...draft, ...patch });
    setQuote(null);
  }

  function submit(event: FormEvent) {
    event.preventDefault();
    quoteMutation.mutate();
  }

  const error = quoteMutation.error ?? createMutation.error;
  const weight = Number(draft.cost_weight || "0.1");

  return (
    <div>
      <PageHeader title="New task" subtitle="Describe the work; Duke picks the agent most likely to succeed at the best price." />
      <div className="grid gap-6 lg:grid-cols-5">
        <Card className="lg:col-span-3">
          <form onSubmit={submit} className="space-y-4" noValidate>
            {error ? <p role="alert" className="rounded-md bg-rose-50 px-3 py-2 text-sm text-rose-800">{formError(error)}</p> : null}
            <TextArea label="Description" name="description" value={draft.description} onChange={(e) => change({ description: e.target.value })} error={fieldError(error, "description")} placeholder="What should the agent do?" />
            <div className="grid gap-4 sm:grid-cols-2">
              <TextField label="Complexity (1–10)" type="number" min={1} max={10} name="complexity" value={draft.complexity} onChange={(e) => change({ complexity: Number(e.target.value) })} error={fieldError(error, "complexity")} />
              <TextField label="Max price (sat)" type="number" min={1} name="max_price_sat" value={draft.max_price_sat} onChange={(e) => change({ max_price_sat: e.target.value })} error={fieldError(error, "max_price_sat")} hint="Optional: no agent above it." />
            </div>
            <div>
              <label htmlFor="cost-weight" className="mb-1 block text-sm font-medium text-slate-800">Quality ↔ cost: {weight.toFixed(2)}</label>
              <input id="cost-weight" type="range" min={0} max={1} step={0.05} value={weight} onChange={(e) => change({ cost_weight: e.target.value })} className="w-full accent-indigo-600" aria-describedby="cost-weight-hint" />
              <p id="cost-weight-hint" className="text-xs text-slate-600">0 = best quality whatever it costs; higher = give up more success probability to save money. {fieldError(error, "cost_weight")}</p>
            </div>
            <div className="grid gap-4 sm:grid-cols-2">
              <Select label="Pin an agent" name="agent_id" value={draft.agent_id} onChange={(e) => change({ agent_id: e.target.value })} error={fieldError(error, "agent_id")}>
                <option value="">let Duke choose</option>
                {agents.data?.map((a) => (
                  <option key={a.id} value={a.id}>{a.name}</option>
                ))}
              </Select>
              <Select label="Exclude agents" multiple name="exclude_agent_ids" value={draft.exclude_agent_ids} onChange={(e) => change({ exclude_agent_ids: Array.from(e.target.selectedOptions, (o) => o.value) })} error={fieldError(error, "exclude_agent_ids")} className="h-24">
                {agents.data?.map((a) => (
                  <option key={a.id} value={a.id}>{a.name}</option>
                ))}
              </Select>
            </div>
            <FileDrop onChange={setFileIds} />
            <div className="flex justify-end">
              <Button type="submit" busy={quoteMutation.isPending}>Get a quote</Button>
            </div>
          </form>
        </Card>
        <Card title="Quote" className="lg:col-span-2">
          {quote ? (
            <div className="space-y-4">
              <dl className="grid grid-cols-2 gap-3 text-sm">
                <dt className="text-slate-600">Agent</dt>
                <dd className="font-medium">{quote.agent_name}</dd>
                <dt className="text-slate-600">Price</dt>
                <dd className="font-medium">{formatSat(quote.price_sat)}</dd>
                <dt className="text-slate-600">Predicted success</dt>
                <dd className="font-medium">{formatPercent(quote.p_success)}</dd>
                <dt className="text-slate-600">Model version</dt>
                <dd>{quote.model_version ?? "none yet (uniform)"}</dd>
                <dt className="text-slate-600">Eligible agents</dt>
                <dd>{quote.eligible_agents}</dd>
              </dl>
              {quote.alternatives.length ? (
                <div>
                  <h3 className="mb-2 text-sm font-semibold">Alternatives</h3>
                  <ul className="divide-y divide-slate-100 text-sm">
                    {quote.alternatives.map((alt, i) => (
                      <li key={String(alt.agent_id ?? i)} className="flex justify-between gap-2 py-1.5">
                        <span>{String(alt.agent_name ?? "")}</span>
                        <span className="tabular-nums text-slate-700">
                          {formatSat(Number(alt.price_sat))} · {formatPercent(Number(alt.p_success))}
                        </span>
                      </li>
                    ))}
                  </ul>
                </div>
              ) : null}
              <p className="text-xs text-slate-600">The price is held in escrow until you accept or reject the result. The agent is drawn again at submission (exploration), so it may differ from the quote.</p>
              <Button className="w-full" busy={createMutation.isPending} onClick={() => createMutation.mutate()}>
                Confirm and pay {formatSat(quote.price_sat)}
              </Button>
            </div>
          ) : (
            <p className="text-sm text-slate-600">Fill in the task and ask for a quote: you will see the agent, the price and the predicted success before anything is charged.</p>
          )}
        </Card>
      </div>
    </div>
  );
}

function Receipt({ routing }: { routing: Record<string, unknown> }) {
  const candidates = (routing.candidates as Record<string, unknown>[] | undefined) ?? [];
  const exploration = (routing.exploration as Record<string, unknown> | undefined) ?? {};
  return (
    <div className="space-y-3 text-sm">
      <p>
        Chosen <strong>{String(routing.agent_name ?? "—")}</strong> at <strong>{formatSat(Number(routing.price_sat))}</strong> with propensity{" "}
        <strong>{formatPercent(Number(routing.propensity), 2)}</strong> by {String(exploration.method ?? "the router")}
        {routing.model_version !== null && routing.model_version !== undefined ? ` (model v${String(routing.model_version)})` : " (no model yet)"}; {String(routing.n_eligible ?? "?")} eligible agents.
      </p>
      {candidates.length ? (
        <div className="overflow-x-auto">
          <table className="min-w-full text-left text-sm" aria-label="Routing candidates">
            <thead className="text-slate-600">
              <tr>
                <th scope="col" className="py-1 pr-3">Agent</th>
                <th scope="col" className="py-1 pr-3 text-right">P(success)</th>
                <th scope="col" className="py-1 pr-3 text-right">Price</th>
                <th scope="col" className="py-1 pr-3 text-right">Utility</th>
                <th scope="col" className="py-1 text-right">Propensity</th>
              </tr>
            </thead>
            <tbody className="divide-y divide-slate-100">
              {candidates.map((c) => (
                <tr key={String(c.agent_id)} className={c.agent_id === routing.agent_id ? "bg-indigo-50 font-medium" : undefined}>
                  <td className="py-1 pr-3">{String(c.agent_name)}</td>
                  <td className="py-1 pr-3 text-right tabular-nums">{formatPercent(Number(c.p_success))}</td>
                  <td className="py-1 pr-3 text-right tabular-nums">{formatSat(Number(c.price_sat))}</td>
                  <td className="py-1 pr-3 text-right tabular-nums">{c.utility_sat === null ? "—" : formatSat(Math.round(Number(c.utility_sat)))}</td>
                  <td className="py-1 text-right tabular-nums">{formatPercent(Number(c.propensity), 2)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
    </div>
  );
}

/** A task's attached files with their names and a download each: the buyer's and admins' view,
 * or (with `taskId`) the operator's whose agent holds the task. */
export function TaskFiles({ fileIds, taskId }: { fileIds: string[]; taskId?: string }) {
  const query = taskId ? { task_id: taskId } : undefined;
  const files = useQueries({
    queries: fileIds.map((id) => ({
      queryKey: ["file", id, taskId ?? null],
      queryFn: () => unwrap(client.GET("/api/v2/files/{file_id}", { params: { path: { file_id: id }, query } })),
      staleTime: Infinity,
    })),
  });
  const [failed, setFailed] = useState<string | null>(null);
  const [busy, setBusy] = useState<string | null>(null);
  async function download(file: Schemas["FileRead"]) {
    setFailed(null);
    setBusy(file.id);
    try {
      const suffix = taskId ? `?task_id=${encodeURIComponent(taskId)}` : "";
      await downloadFile(`/api/v2/files/${file.id}/content${suffix}`, file.name);
    } catch (error) {
      setFailed(`${file.name}: ${errorText(error)}`);
    } finally {
      setBusy(null);
    }
  }
  return (
    <div className="mt-4">
      <h3 className="mb-2 text-sm font-semibold text-slate-800">Attached files</h3>
      {failed ? <p role="alert" className="mb-2 text-sm text-rose-700">{failed}</p> : null}
      <ul className="divide-y divide-slate-100 rounded-md ring-1 ring-slate-200" aria-label="Attached files">
        {files.map((query, i) => (
          <li key={fileIds[i]} className="flex flex-wrap items-center justify-between gap-2 px-3 py-2 text-sm">
            {query.isPending ? <Loading label="Loading file…" /> : query.error ? <span className="text-rose-700">File {shortId(fileIds[i])}: {errorText(query.error)}</span> : (
              <>
                <span className="min-w-0">
                  <span className="font-medium break-all">{query.data.name}</span>{" "}
                  <span className="text-xs text-slate-600">{query.data.content_type} · {formatBytes(query.data.size_bytes)}</span>
                </span>
                <Button variant="secondary" className="px-2 py-1 text-xs" busy={busy === query.data.id} aria-label={`Download ${query.data.name}`} onClick={() => void download(query.data)}>
                  Download
                </Button>
              </>
            )}
          </li>
        ))}
      </ul>
    </div>
  );
}

function Settle({ task }: { task: Schemas["TaskDetail"] }) {
  const queryClient = useQueryClient();
  const [reason, setReason] = useState("");
  const done = () => {
    void queryClient.invalidateQueries({ queryKey: ["task", task.id] });
    void queryClient.invalidateQueries({ queryKey: ["tasks"] });
    void queryClient.invalidateQueries({ queryKey: ["me"] });
  };
  const accept = useMutation({ mutationFn: () => unwrap(client.POST("/api/v2/tasks/{task_id}/accept", { params: { path: { task_id: task.id } } })), onSuccess: done });
  const reject = useMutation({ mutationFn: () => unwrap(client.POST("/api/v2/tasks/{task_id}/reject", { params: { path: { task_id: task.id } }, body: { reason } })), onSuccess: done });
  const error = accept.error ?? reject.error;
  return (
    <Card title="Accept or reject">
      <p className="mb-3 text-sm text-slate-700">
        Accepting pays the agent from escrow; rejecting refunds you and records the result as a failure. Open until {formatDate(task.accept_by)}; after that the agent is paid.
      </p>
      {error ? <p role="alert" className="mb-3 rounded-md bg-rose-50 px-3 py-2 text-sm text-rose-800">{formError(error)}</p> : null}
      <div className="space-y-3">
        <Button onClick={() => accept.mutate()} busy={accept.isPending}>Accept and pay</Button>
        <TextField label="Reason for rejecting" name="reason" value={reason} onChange={(e) => setReason(e.target.value)} error={fieldError(error, "reason")} />
        <Button variant="danger" onClick={() => reject.mutate()} busy={reject.isPending}>Reject and refund</Button>
      </div>
    </Card>
  );
}

function Feedback({ taskId }: { taskId: string }) {
  const queryClient = useQueryClient();
  const current = useQuery({
    queryKey: ["task", taskId, "feedback"],
    queryFn: async () => {
      const { data, response } = await client.GET("/api/v2/tasks/{task_id}/feedback", { params: { path: { task_id: taskId } } });
      return response.status === 404 ? null : (data ?? null);
    },
  });
  const [form, setForm] = useState<Schemas["FeedbackWrite"] | null>(null);
  const value: Schemas["FeedbackWrite"] = form ?? {
    thumbs_up: current.data?.thumbs_up ?? null,
    rating: current.data?.rating ?? null,
    comment: current.data?.comment ?? "",
    correction: current.data?.correction ?? null,
  };
  const save = useMutation({
    mutationFn: () => unwrap(client.PUT("/api/v2/tasks/{task_id}/feedback", { params: { path: { task_id: taskId } }, body: value })),
    onSuccess: () => {
      setForm(null);
      void queryClient.invalidateQueries({ queryKey: ["task", taskId, "feedback"] });
    },
  });
  const set = (patch: Partial<Schemas["FeedbackWrite"]>) => setForm({ ...value, ...patch });

  return (
    <Card title="Feedback">
      {current.isPending ? <Loading /> : (
        <form className="space-y-3" onSubmit={(e) => { e.preventDefault(); save.mutate(); }}>
          {save.error ? <p role="alert" className="rounded-md bg-rose-50 px-3 py-2 text-sm text-rose-800">{formError(save.error)}</p> : null}
          {save.isSuccess && !form ? <Notice tone="success">Thanks: your feedback is saved.</Notice> : null}
          <div className="flex gap-2" role="group" aria-label="Thumbs">
            <Button variant={value.thumbs_up === true ? "primary" : "secondary"} aria-pressed={value.thumbs_up === true} onClick={() => set({ thumbs_up: value.thumbs_up === true ? null : true })}><Thumb /> Good</Button>
            <Button variant={value.thumbs_up === false ? "primary" : "secondary"} aria-pressed={value.thumbs_up === false} onClick={() => set({ thumbs_up: value.thumbs_up === false ? null : false })}><Thumb down /> Bad</Button>
          </div>
          <fieldset>
            <legend className="mb-1 text-sm font-medium text-slate-800">Rating</legend>
            <div className="flex gap-1">
              {[1, 2, 3, 4, 5].map((r) => (
                <button key={r} type="button" aria-label={`${r} star${r > 1 ? "s" : ""}`} aria-pressed={value.rating === r} onClick={() => set({ rating: value.rating === r ? null : r })} className={`text-2xl ${value.rating && r <= value.rating ? "text-amber-500" : "text-slate-400"} rounded focus-visible:outline-2 focus-visible:outline-indigo-600`}>
                  ★
                </button>
              ))}
            </div>
            {fieldError(save.error, "rating") ? <p className="text-sm text-rose-700">{fieldError(save.error, "rating")}</p> : null}
          </fieldset>
          <TextArea label="Comment" name="comment" value={value.comment ?? ""} onChange={(e) => set({ comment: e.target.value })} error={fieldError(save.error, "comment")} />
          <TextArea label="Corrected answer" name="correction" value={value.correction ?? ""} onChange={(e) => set({ correction: e.target.value || null })} error={fieldError(save.error, "correction")} hint="Optional: what the answer should have been." />
          <Button type="submit" busy={save.isPending}>Save feedback</Button>
        </form>
      )}
    </Card>
  );
}

export function TaskPage() {
  const { taskId = "" } = useParams();
  const queryClient = useQueryClient();
  const agents = useAgents();
  const { profile } = useAuth();
  const task = useQuery({
    queryKey: ["task", taskId],
    queryFn: () => unwrap(client.GET("/api/v2/tasks/{task_id}", { params: { path: { task_id: taskId } } })),
  });
  const cancel = useMutation({
    mutationFn: () => unwrap(client.POST("/api/v2/tasks/{task_id}/cancel", { params: { path: { task_id: taskId } } })),
    onSuccess: () => {
      void queryClient.invalidateQueries({ queryKey: ["task", taskId] });
      void queryClient.invalidateQueries({ queryKey: ["me"] });
    },
  });

  if (task.isPending) return <Loading />;
  if (task.error) return <ErrorNote error={task.error} onRetry={() => task.refetch()} />;
  const t = task.data;
  const isBuyer = profile?.role === "buyer";
  const windowOpen = t.status === "delivered" && (!t.accept_by || new Date(t.accept_by) > new Date());

  return (
    <div className="space-y-6">
      <PageHeader
        title={`Task ${shortId(t.id)}`}
        subtitle={<span className="flex items-center gap-2">Status <Badge>{t.status}</Badge> · created {formatDate(t.created_at)}</span>}
        actions={isBuyer && t.status === "created" ? <Button variant="secondary" busy={cancel.isPending} onClick={() => cancel.mutate()}>Cancel and refund</Button> : <Link to="/tasks" className="text-sm text-indigo-700 underline">All tasks</Link>}
      />
      {cancel.error ? <ErrorNote error={cancel.error} /> : null}
      <div className="grid gap-6 lg:grid-cols-3">
        <div className="min-w-0 space-y-6 lg:col-span-2">
          <Card title="Description">
            <p className="whitespace-pre-wrap text-sm text-slate-800">{t.description}</p>
            <dl className="mt-4 grid grid-cols-2 gap-2 text-sm sm:grid-cols-4">
              <div><dt className="text-slate-600">Complexity</dt><dd className="font-medium">{t.complexity}</dd></div>
              <div><dt className="text-slate-600">Price</dt><dd className="font-medium">{formatSat(t.price_sat)}</dd></div>
              <div><dt className="text-slate-600">Agent</dt><dd className="font-medium">{agentName(agents.data, t.agent_id)}</dd></div>
              <div><dt className="text-slate-600">Attempts</dt><dd className="font-medium">{t.attempts}</dd></div>
            </dl>
            {t.file_ids.length ? <TaskFiles fileIds={t.file_ids} /> : null}
          </Card>
          <Card title="Result">
            {t.result ? (
              <div className="space-y-2">
                <pre tabIndex={0} aria-label="The agent’s answer" className="max-h-96 overflow-auto focus-visible:outline-2 focus-visible:outline-indigo-600 whitespace-pre-wrap rounded-md bg-slate-50 p-3 text-sm text-slate-900 ring-1 ring-slate-200">{t.result.text}</pre>
                <p className="text-xs text-slate-600">
                  {t.result.success ? "reported as a success" : "reported as a failure"} · latency {formatMs(t.result.latency_ms)} · attempt {t.result.attempt}
                </p>
              </div>
            ) : t.error ? (
              <ErrorNote error={new Error(t.error)} />
            ) : (
              <p className="text-sm text-slate-600">No result yet: this page updates when the agent delivers.</p>
            )}
            {t.rejection_reason ? <p className="mt-3 text-sm text-rose-800">Rejected: {t.rejection_reason}</p> : null}
          </Card>
          <Card title="Routing receipt">
            <Receipt routing={t.routing} />
          </Card>
        </div>
        <div className="min-w-0 space-y-6">
          {isBuyer && windowOpen ? <Settle task={t} /> : null}
          {isBuyer && t.result ? <Feedback taskId={t.id} /> : null}
          <Card title="Ledger entries">
            {t.transactions.length ? (
              <ul className="space-y-3 text-sm">
                {t.transactions.map((tx) => (
                  <li key={tx.id}>
                    <div className="font-medium">{tx.kind} <span className="text-xs font-normal text-slate-600">{formatDate(tx.created_at)}</span></div>
                    <ul className="mt-1 space-y-0.5">
                      {tx.entries.map((e, i) => (
                        <li key={i} className="flex justify-between gap-2 tabular-nums">
                          <span className="truncate text-slate-700">{e.account_name}</span>
                          <span className={`whitespace-nowrap ${e.amount_sat < 0 ? "text-rose-700" : "text-emerald-700"}`}>{e.amount_sat > 0 ? "+" : ""}{formatSat(e.amount_sat)}</span>
                        </li>
                      ))}
                    </ul>
                  </li>
                ))}
              </ul>
            ) : (
              <p className="text-sm text-slate-600">No ledger entries.</p>
            )}
          </Card>
        </div>
      </div>
    </div>
  );
}
