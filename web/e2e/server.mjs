// Start a real `dukenet serve` on a free loopback port (SQLite under a fresh var dir, one
// embedded runner, replay agents), with an admin made by `dukenet users create-admin`.
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const ADMIN = { email: "admin@e2e.example.com", password: "e2e-admin-password" };

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Start the server; `extraEnv` adds (or overrides) its DUKENET_* settings. */
export async function startServer(extraEnv = {}) {
  const port = await freePort();
  const varDir = mkdtempSync(join(tmpdir(), "dukenet-e2e-"));
  const env = {
    ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("DUKENET_"))),
    DUKENET_VAR_DIR: varDir,
    DUKENET_PORT: String(port),
    DUKENET_JWT_SECRET: "e2e-secret-" + "x".repeat(32),
    DUKENET_EMBEDDED_RUNNERS: "1",
    DUKENET_EMBEDDED_TRAINER: "0",
    DUKENET_DISPUTE_WINDOW_S: "3600",
    DUKENET_ROUTING_SEED: "0",
    DUKENET_EVENTS_POLL_S: "0.3",
    DUKENET_RUNNER_POLL_S: "0.2",
    DUKENET_ADMIN_PASSWORD: ADMIN.password,
    OMP_NUM_THREADS: "1",
    ...extraEnv,
  };
  const made = spawnSync("dukenet", ["users", "create-admin", "--email", ADMIN.email], { env, encoding: "utf8" });
  if (made.status !== 0) throw new Error(`create-admin failed: ${made.stderr}`);
  const child = spawn("dukenet", ["serve"], { env, stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (chunk) => {
    stderr = (stderr + chunk).slice(-4000);
  });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 1200; i++) {
    if (child.exitCode !== null) throw new Error(`dukenet serve exited: ${stderr}`);
    try {
      const res = await fetch(`${url}/openapi.json`);
      if (res.ok) break;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    varDir,
    stop: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once("exit", resolve);
        child.kill("SIGTERM");
      }),
  };
}

/** A tiny JSON client on the server's API for setting up what the UI flows start from. */
export function apiClient(base) {
  async function call(method, path, { token, body } = {}) {
    const res = await fetch(`${base}/api/v2${path}`, {
      method,
      headers: { "Content-Type": "application/json", ...(token ? { Authorization: `Bearer ${token}` } : {}) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    const data = text ? JSON.parse(text) : null;
    if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
    return data;
  }
  return {
    call,
    async login(email, password) {
      return (await call("POST", "/auth/login", { body: { email, password } })).access_token;
    },
  };
}
