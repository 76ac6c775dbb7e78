// The OpenClaw entry point of the GPU bridge plugin. Dependency-free Node (OpenClaw installs the
// plugin without running npm install).
//
// The plugin gives OpenClaw two things:
// - MCP tools (gpu_embed, gpu_similarity, ...): the Python MCP server that openclaw.plugin.json
//   declares under `mcpServers`; OpenClaw starts that one itself.
// - An embedding provider, `gpu-bridge`, for memory search (`memory.search.provider: "gpu-bridge"`),
//   registered below. Its embed/embedBatch go through the bridge's pool (balancing, failover,
//   sharding, deadlines) over the bridge's OpenAI-compatible API.
// - A media-understanding provider, also `gpu-bridge`, for speech to text (voice notes,
//   `openclaw infer audio transcribe --model gpu-bridge/default`), over the same bridge's
//   `/v1/audio/transcriptions`.
//
// Nothing to start by hand: on first use a provider starts `gpu-bridge --transport http` on a free
// loopback port, with a random token and the plugin's config in its environment (never in argv,
// which `ps` shows), and waits for its "ready" line. One bridge serves both providers and all their
// instances in this OpenClaw process. It is stopped when the last provider closes, when the plugin is disposed
// (end of a CLI command, Gateway shutdown) and on `gateway_stop`; and because it runs with
// `--exit-with-stdin`, it also exits when this process dies without stopping it (its stdin pipe
// closes with us, however we end).

import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";

const PROVIDER_ID = "gpu-bridge";
const DEFAULT_COMMAND = "gpu-bridge";
// The audio model OpenClaw hands the provider when none is named: the pool's default transcription model.
const POOL_DEFAULT_MODEL = "default";
// With no hosts configured the bridge first starts a local GPU service, which loads a model.
const READY_TIMEOUT_MS = 180_000;
const STOP_GRACE_MS = 5_000;
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

  /** A request to the bridge's OpenAI-compatible API: a JSON `body` or a multipart `form`; the answer's JSON. */
  async request(path, { method = "GET", body, form, signal } = {}) {
    const { baseUrl, token } = await this.start();
    const headers = { authorization: `Bearer ${token}`, accept: "application/json" };
    if (body !== undefined) headers["content-type"] = "application/json";
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
    const text = await response.text();
    let data;
    try {
      data = JSON.parse(text);
    } catch {
      data = undefined;
    }
    if (!response.ok) {
      const message = data?.error?.message ?? text.slice(0, 300);
      throw new Error(`gpu-bridge: HTTP ${response.status}: ${message}`);
    }
    return data;
  }
}

const bridges = new Map();

function bridgeFor(pluginConfig, logger) {
  const config = pluginConfig ?? {};
  const command = config.bridgeCommand || DEFAULT_COMMAND;
  const key = JSON.stringify([command, config]);
  if (!bridges.has(key)) bridges.set(key, new BridgeProcess(command, config, logger));
  return bridges.get(key);
}

async function stopAll() {
  await Promise.all([...bridges.values()].map((bridge) => bridge.stop()));
}

function textOf(input) {
  if (typeof input === "string") return input;
  if (input.parts?.some((part) => part.type !== "text")) {
    throw new Error("gpu-bridge embeds text only; this memory input has non-text parts");
  }
  return input.parts?.length ? input.parts.map((part) => part.text).join("") : input.text;
}

function decodeFloat32(base64) {
  const bytes = Buffer.from(base64, "base64");
  const out = new Array(bytes.length / 4);
  for (let i = 0; i < out.length; i += 1) out[i] = bytes.readFloatLE(i * 4);
  return out;
}

/** What the model's prompt for this kind of text is called: OpenClaw's query/document, unless renamed in
 * memory.search (inputType, queryInputType, documentInputType). */
function inputTypeFor(options, kind) {
  if (kind === "query") return options.queryInputType ?? options.inputType ?? "query";
  if (kind === "document") return options.documentInputType ?? options.inputType ?? "document";
  return options.inputType ?? kind;
}

function embeddingAdapter(api) {
  return {
    id: PROVIDER_ID,
    transport: "remote", // required once selected: a broken pool fails the command, it never silently degrades
    formatSetupError: (err) => (err instanceof Error ? err.message : String(err)),
    async create(options) {
      const bridge = bridgeFor(api.pluginConfig, api.logger);
      const listing = await bridge.request("/v1/models");
      const models = listing?.data ?? [];
      const named = options.model?.trim() || undefined;
      const chosen = named ? models.find((m) => m.id === named) : models.find((m) => m.default);
      const model = named ?? chosen?.id;
      if (!model) {
        const why = (listing?.host_errors ?? []).map((h) => `${h.host}: ${h.error}`).join("; ");
        throw new Error(why
          ? `gpu-bridge: no GPU host answered (${why}); check the hosts in plugins.entries.openclaw-gpu-bridge.config`
          : "gpu-bridge: the pool reports no embedding model; set memory.search.model");
      }
      const dimensions = options.dimensions ?? chosen?.dimensions;
      const kinds = { query: inputTypeFor(options, "query"), document: inputTypeFor(options, "document") };
      bridge.users += 1;
      let closed = false;

      async function embedBatch(inputs, callOptions = {}) {
        if (inputs.length === 0) return [];
        const inputType = callOptions.inputType ? inputTypeFor(options, callOptions.inputType) : undefined;
        const body = {
          input: inputs.map(textOf),
          model,
          encoding_format: "base64",
          ...(options.dimensions ? { dimensions: options.dimensions } : {}),
          ...(inputType ? { input_type: inputType } : {}),
        };
        const answer = await bridge.request("/v1/embeddings", { method: "POST", body, signal: callOptions.signal });
        const rows = [...(answer?.data ?? [])].sort((a, b) => a.index - b.index);
        if (rows.length !== inputs.length) {
          throw new Error(`gpu-bridge: ${rows.length} vectors for ${inputs.length} inputs`);
        }
        return rows.map((row) => (typeof row.embedding === "string" ? decodeFloat32(row.embedding) : row.embedding));
      }

      return {
        provider: {
          id: PROVIDER_ID,
          model,
          ...(dimensions ? { dimensions } : {}),
          // OpenClaw splits longer chunks (it counts UTF-8 bytes, so it splits early: no text is lost).
          ...(chosen?.max_input_tokens ? { maxInputTokens: chosen.max_input_tokens } : {}),
          embed: async (input, callOptions) => (await embedBatch([input], callOptions))[0],
          embedBatch,
          async close() {
            if (closed) return;
            closed = true;
            bridge.users -= 1;
            if (bridge.users <= 0) await bridge.stop();
          },
        },
        // The index identity: what decides the vectors, not where they are computed (hosts may change).
        runtime: { id: PROVIDER_ID, cacheKeyData: { model, dimensions: dimensions ?? null, inputTypes: kinds } },
      };
    },
  };
}

/** Speech to text for OpenClaw's media understanding (voice notes, `openclaw infer audio transcribe`): the
 * audio goes as OpenAI's multipart request to the bridge's `/v1/audio/transcriptions`, which runs it on
 * the pool (a long recording is split over the hosts). */
function transcriptionProvider(api) {
  async function transcribe(req) {
    const bridge = bridgeFor(api.pluginConfig, api.logger);
    const form = new FormData();
    form.append("file", new Blob([req.buffer], { type: req.mime || "application/octet-stream" }), req.fileName || "audio");
    // OpenClaw's `infer --model gpu-bridge/<m>` hands us defaultModels.audio, not <m>: the pool's default.
    const model = req.model?.trim();
    if (model && model !== POOL_DEFAULT_MODEL) form.append("model", model);
    if (req.language?.trim()) form.append("language", req.language.trim());
    if (req.prompt?.trim()) form.append("prompt", req.prompt.trim());
    form.append("response_format", "json");
    const signals = [req.signal, req.timeoutMs > 0 ? AbortSignal.timeout(req.timeoutMs) : undefined].filter(Boolean);
    let answer;
    bridge.users += 1; // the memory provider's close() leaves the bridge running meanwhile
    try {
      answer = await bridge.request("/v1/audio/transcriptions", { method: "POST", form, signal: AbortSignal.any(signals) });
    } catch (err) {
      if (err?.name === "TimeoutError") {
        throw new Error(`gpu-bridge: no transcript within ${Math.round(req.timeoutMs / 1000)}s ` +
                        "(timeoutSeconds in OpenClaw's tools.media)");
      }
      throw err;
    } finally {
      bridge.users -= 1;
    }
    if (typeof answer?.text !== "string") throw new Error("gpu-bridge: the bridge's answer has no transcript (text)");
    const used = answer.model ?? (model && model !== POOL_DEFAULT_MODEL ? model : undefined);
    return { text: answer.text, ...(used ? { model: used } : {}) };
  }

  return {
    id: PROVIDER_ID,
    capabilities: ["audio"],
    defaultModels: { audio: POOL_DEFAULT_MODEL },
    // No credential of OpenClaw's: the plugin starts its own bridge, with a token of its own.
    resolveAuth: () => ({ kind: "none", source: "gpu-bridge plugin: its own bridge process" }),
    // Taking the context makes the provider usable without an OpenClaw API key (`infer --model gpu-bridge/...`).
    async transcribeAudioWithContext(req) {
      try {
        await bridgeFor(api.pluginConfig, api.logger).start();
      } catch (err) {
        return { ok: false, error: err }; // before any upload: OpenClaw may try its next provider
      }
      return { ok: true, value: await transcribe(req) };
    },
    transcribeAudio: transcribe,
  };
}

export default {
  id: "openclaw-gpu-bridge",
  register(api) {
    if (typeof api.registerEmbeddingProvider === "function") api.registerEmbeddingProvider(embeddingAdapter(api));
    if (typeof api.registerMediaUnderstandingProvider === "function") {
      api.registerMediaUnderstandingProvider(transcriptionProvider(api));
    }
    api.lifecycle?.onDispose?.(stopAll);
    api.on?.("gateway_stop", stopAll);
  },
};
