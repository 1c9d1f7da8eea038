// The typed API client (generated types in src/client/schema.d.ts) with the token flow:
// every request carries the access token; a 401 refreshes the session once (single flight)
// and retries; when the refresh fails the session ends (the app shows the login page).
import createClient from "openapi-fetch";
import type { components, paths } from "../client/schema";
import { loadSession, saveSession } from "./session";

export type Schemas = components["schemas"];

export class ApiError extends Error {
  readonly status: number;
  /** field name -> message, from a 422's `detail[].loc` */
  readonly fields: Record<string, string>;

  constructor(status: number, message: string, fields: Record<string, string> = {}) {
    super(message);
    this.status = status;
    this.fields = fields;
  }
}

interface ValidationItem {
  loc?: (string | number)[];
  msg?: string;
}

/** Turn an error body (`{detail: string}` or FastAPI's 422 list) into an ApiError. */
export function toApiError(status: number, body: unknown): ApiError {
  const detail = (body as { detail?: unknown } | null)?.detail;
  if (typeof detail === "string") return new ApiError(status, detail);
  if (Array.isArray(detail)) {
    const fields: Record<string, string> = {};
    const parts: string[] = [];
    for (const item of detail as ValidationItem[]) {
      const loc = (item.loc ?? []).filter((p) => p !== "body" && p !== "query" && p !== "path");
      const field = loc.length ? String(loc[loc.length - 1]) : "";
      const msg = (item.msg ?? "invalid").replace(/^Value error, /, "");
      if (field && !(field in fields)) fields[field] = msg;
      parts.push(field ? `${field}: ${msg}` : msg);
    }
    return new ApiError(status, parts.join("; ") || "invalid request", fields);
  }
  return new ApiError(status, status >= 500 ? "the server failed; try again" : `request failed (${status})`);
}

let refreshing: Promise<boolean> | null = null;

async function refreshSession(): Promise<boolean> {
  const session = loadSession();
  if (!session) return false;
  const res = await fetch("/api/v2/auth/refresh", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ refresh_token: session.refreshToken }),
  });
  if (!res.ok) {
    saveSession(null);
    return false;
  }
  const body = (await res.json()) as Schemas["TokenRead"];
  saveSession({ accessToken: body.access_token, refreshToken: body.refresh_token });
  return true;
}

/** Refresh the session once however many requests ask at the same time. */
export function refreshOnce(): Promise<boolean> {
  refreshing ??= refreshSession().finally(() => {
    refreshing = null;
  });
  return refreshing;
}

function withToken(request: Request): Request {
  const session = loadSession();
  if (session) request.headers.set("Authorization", `Bearer ${session.accessToken}`);
  return request;
}

/** fetch with the access token, refreshing it once on a 401. */
export async function authFetch(input: Request): Promise<Response> {
  const retry = input.clone();
  const response = await fetch(withToken(input));
  if (response.status !== 401 || !loadSession() || input.url.includes("/auth/")) return response;
  if (!(await refreshOnce())) return response;
  return fetch(withToken(retry));
}

export const client = createClient<paths>({ baseUrl: "", fetch: authFetch });

/** Return `data` of an openapi-fetch result or throw its ApiError. */
export async function unwrap<T>(
  promise: Promise<{ data?: T; error?: unknown; response: Response }>,
): Promise<T> {
  const { data, error, response } = await promise;
  if (!response.ok) throw toApiError(response.status, error);
  return data as T;
}

export function errorText(error: unknown): string {
  if (error instanceof Error) return error.message;
  return "something went wrong";
}
