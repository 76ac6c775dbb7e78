// The plugin's own `gpu-bridge --transport http` process, shared by its providers, and the HTTP calls to it.
//
// Nothing to start by hand: on first use a provider starts `gpu-bridge --transport http` on a free
// loopback port, with a random token and the plugin's config in its environment (never in argv,
// which `ps` shows), and waits for its "ready" line. One bridge serves every provider and all their
// instances in this OpenClaw process. It is stopped when the last provider closes, when the plugin is disposed
// (end of a CLI command, Gateway shutdown) and on `gateway_stop`; and because it runs with
// `--exit-with-stdin`, it also exits when this process dies without stopping it (its stdin pipe
// closes with us, however we end).
//
// A refusal of the bridge's becomes an Error with `status` (the HTTP status), `code` (OpenAI's error code)
// and, for 429/503 with Retry-After, `retryAfterMs`: OpenClaw's memory indexer reads those to back off as
// long as the pool asks (docs/sharing.md), instead of guessing.

import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";

export const PROVIDER_ID = "gpu-bridge";
const DEFAULT_COMMAND = "gpu-bridge";
// With no hosts configured the bridge first starts a local GPU service, which loads a model.
const READY_TIMEOUT_MS = 180_000;
const STOP_GRACE_MS = 5_000;
// The class of a call on the pool (gpu_protocol/priority.py): interactive or batch.
const PRIORITY_HEADER = "X-GPU-Priority";
const READY_LINE = /is ready at (http:\/\/\S+?)\/mcp\s/;

/** One `gpu-bridge --transport http` child process. */
class BridgeProcess {
  constructor(command, config, logger) {
    this.command = command;
    this.config = config;
    this.logger = logger;
    this.users = 0;
    this.child = null;
    this.ready = null; // Promise<{ baseUrl, token }> while starting or running
    this.stderrTail = [];
  }

  /** Base URL and token of a running bridge, started if needed. */
  start() {
    if (!this.ready) {
      this.ready = this.#spawn();
      this.ready.catch(() => { this.ready = null; });
    }
    return this.ready;
  }

  #spawn() {
    const token = randomBytes(24).toString("hex");
    const args = ["--transport", "http", "--host", "127.0.0.1", "--port", "0", "--exit-with-stdin"];
    const env = { ...process.env, GPU_BRIDGE_CONFIG: JSON.stringify(this.config), GPU_BRIDGE_AUTH_TOKEN: token };
    return new Promise((resolve, reject) => {
      let settled = false;
      const fail = (message) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.#kill();
        reject(new Error(message));
      };
      // Keeps this process alive while the bridge starts (everything else about the child is unref'd).
      const timer = setTimeout(
        () => fail(`gpu-bridge did not report ready within ${READY_TIMEOUT_MS / 1000}s${this.#tail()}`),
        READY_TIMEOUT_MS,
      );
      const child = spawn(this.command, args, { env, stdio: ["pipe", "pipe", "pipe"] });
      this.child = child;
      const onExit = () => child.kill("SIGTERM");
      process.once("exit", onExit);
      child.on("error", (err) => fail(err.code === "ENOENT"
        ? `cannot start the GPU bridge: \`${this.command}\` was not found. Install it (pip install openclaw-gpu-bridge) ` +
          "or set bridgeCommand in plugins.entries.openclaw-gpu-bridge.config to its full path"
        : `cannot start the GPU bridge (\`${this.command}\`): ${err.message}`));
      child.on("exit", (code, signal) => {
        process.removeListener("exit", onExit);
        if (this.child === child) {
          this.child = null;
          this.ready = null;
        }
        if (settled) {
          if (!child.stopped) this.logger.warn(`gpu-bridge exited (${signal ?? `code ${code}`}); it restarts on next use`);
          return;
        }
        fail(`gpu-bridge exited (${signal ?? `code ${code}`}) before it was ready${this.#tail()}`);
      });
      let stdout = "";
      child.stdout.setEncoding("utf8");
      child.stdout.on("data", (chunk) => {
        if (settled) return; // later output (none expected) is drained and dropped
        stdout += chunk;
        const match = READY_LINE.exec(stdout);
        if (!match) return;
        settled = true;
        clearTimeout(timer);
        stdout = "";
        resolve({ baseUrl: match[1], token });
      });
      child.stderr.setEncoding("utf8");
      child.stderr.on("data", (chunk) => this.#stderr(chunk));
      for (const handle of [child, child.stdin, child.stdout, child.stderr]) handle.unref?.();
    });
  }

  #stderr(chunk) {
    for (const line of chunk.split("\n")) {
      if (!line.trim()) continue;
      this.stderrTail = [...this.stderrTail.slice(-9), line];
      if (/ (WARNING|ERROR|CRITICAL) /.test(line) || line.startsWith("gpu-bridge:")) this.logger.warn(`gpu-bridge: ${line}`);
      else this.logger.debug?.(`gpu-bridge: ${line}`);
    }
  }

  #tail() {
    return this.stderrTail.length ? `: ${this.stderrTail.slice(-3).join(" | ")}` : "";
  }

  #kill() {
    const child = this.child;
    if (!child) return Promise.resolve();
    this.child = null;
    this.ready = null;
    child.stopped = true;
    if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
    child.ref(); // wait for its exit event even when nothing else keeps this process alive
    return new Promise((done) => {
      // Closing stdin is the clean stop (--exit-with-stdin); signals only if the bridge hangs.
      const term = setTimeout(() => child.kill("SIGTERM"), STOP_GRACE_MS);
      const force = setTimeout(() => child.kill("SIGKILL"), 2 * STOP_GRACE_MS);
      child.once("exit", () => {
        clearTimeout(term);
        clearTimeout(force);
        done();
      });
      child.stdin.end();
    });
  }

  stop() {
    return this.#kill();
  }

  /** A request to the bridge's OpenAI-compatible API: a JSON `body` or a multipart `form`; the answer's JSON.
   * `priority` ("interactive" | "batch") is sent as X-GPU-Priority: the class of the call on the pool. */
  async request(path, options = {}) {
    const text = await (await this.#send(path, options, "application/json")).text();
    try {
      return JSON.parse(text);
    } catch {
      return undefined;
    }
  }

  /** A request whose answer is bytes (speech): a Buffer. */
  async requestBytes(path, options = {}) {
    return Buffer.from(await (await this.#send(path, options, "*/*")).arrayBuffer());
  }

  /** The bridge's answer to a request, once it says OK; a refusal is thrown (see `refusal`). */
  async #send(path, { method = "GET", body, form, signal, priority } = {}, accept) {
    const { baseUrl, token } = await this.start();
    const headers = { authorization: `Bearer ${token}`, accept };
    if (body !== undefined) headers["content-type"] = "application/json";
    if (priority) headers[PRIORITY_HEADER] = priority;
    let response;
    try {
      response = await fetch(`${baseUrl}${path}`, {
        method,
        headers, // a form sets its own multipart content-type (with its boundary)
        body: form ?? (body === undefined ? undefined : JSON.stringify(body)),
        signal,
      });
    } catch (err) {
      if (err?.name === "AbortError" || err?.name === "TimeoutError") throw err;
      throw new Error(`gpu-bridge: cannot reach the bridge at ${baseUrl}: ${err?.cause?.message ?? err?.message ?? err}`);
    }
    if (!response.ok) throw refusal(response, await response.text());
    return response;
  }
}

/** The Error for a refused request: its message names the status and the bridge's reason; `status`, `code`
 * and (429/503 with Retry-After) `retryAfterMs` say what OpenClaw's retry logic needs. */
export function refusal(response, text) {
  let data;
  try {
    data = JSON.parse(text);
  } catch {
    data = undefined;
  }
  const error = new Error(`gpu-bridge: HTTP ${response.status}: ${data?.error?.message ?? text.slice(0, 300)}`);
  error.status = response.status;
  if (typeof data?.error?.code === "string") error.code = data.error.code;
  const retryAfterMs = retryAfterMsOf(response.headers.get("retry-after"));
  if (retryAfterMs !== undefined && (response.status === 429 || response.status === 503)) error.retryAfterMs = retryAfterMs;
  return error;
}

/** Retry-After (seconds, or an HTTP date) in whole milliseconds; undefined when absent or unreadable. */
export function retryAfterMsOf(value) {
  const raw = value?.trim();
  if (!raw) return undefined;
  const seconds = /^\d+(\.\d+)?$/.test(raw) ? Number(raw) : (Date.parse(raw) - Date.now()) / 1000;
  return Number.isFinite(seconds) ? Math.max(0, Math.ceil(seconds * 1000)) : undefined;
}

const bridges = new Map();

export function bridgeFor(pluginConfig, logger) {
  const config = pluginConfig ?? {};
  const command = config.bridgeCommand || DEFAULT_COMMAND;
  const key = JSON.stringify([command, config]);
  if (!bridges.has(key)) bridges.set(key, new BridgeProcess(command, config, logger));
  return bridges.get(key);
}

export async function stopAll() {
  await Promise.all([...bridges.values()].map((bridge) => bridge.stop()));
}
