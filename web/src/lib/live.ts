// One server-sent-events stream per signed-in tab (`GET /api/v2/events/tasks`): each task event
// invalidates the cached queries that show that task, so lists and pages update without polling.
// fetch (not EventSource) so that the stream carries the Authorization header like every call.
import type { QueryClient } from "@tanstack/react-query";
import { refreshOnce } from "./api";
import { loadSession } from "./session";

export interface TaskEvent {
  task_id: string;
  status: string;
  agent_id: string | null;
  updated_at: string;
}

/** Split an SSE byte stream's text into events; returns the unparsed rest. */
export function parseSse(buffer: string, onEvent: (event: string, data: string) => void): string {
  const blocks = buffer.split(/\r?\n\r?\n/);
  const rest = blocks.pop() ?? "";
  for (const block of blocks) {
    let event = "message";
    const data: string[] = [];
    for (const line of block.split(/\r?\n/)) {
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon === -1 ? line : line.slice(0, colon);
      const value = colon === -1 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "event") event = value;
      else if (field === "data") data.push(value);
    }
    if (data.length) onEvent(event, data.join("\n"));
  }
  return rest;
}

export function applyTaskEvent(queryClient: QueryClient, event: TaskEvent): void {
  void queryClient.invalidateQueries({ queryKey: ["tasks"] });
  void queryClient.invalidateQueries({ queryKey: ["task", event.task_id] });
  void queryClient.invalidateQueries({ queryKey: ["inbox"] });
  void queryClient.invalidateQueries({ queryKey: ["me"] });
}

/** Keep the stream open until `signal` aborts, reconnecting with a growing delay. */
export async function followTaskEvents(queryClient: QueryClient, signal: AbortSignal): Promise<void> {
  let delay = 1000;
  while (!signal.aborted) {
    const session = loadSession();
    if (!session) return;
    try {
      const response = await fetch("/api/v2/events/tasks", {
        headers: { Authorization: `Bearer ${session.accessToken}`, Accept: "text/event-stream" },
        signal,
      });
      if (response.status === 401) {
        if (!(await refreshOnce())) return;
        continue;
      }
      if (!response.ok || !response.body) throw new Error(`stream ${response.status}`);
      delay = 1000;
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer = parseSse(buffer + value, (name, data) => {
          if (name === "task") applyTaskEvent(queryClient, JSON.parse(data) as TaskEvent);
        });
      }
    } catch {
      if (signal.aborted) return;
    }
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 2, 15000);
  }
}
