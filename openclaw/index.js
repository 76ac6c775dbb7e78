// The OpenClaw entry point of the GPU bridge plugin. Dependency-free Node (OpenClaw installs the
// plugin without running npm install).
//
// The plugin gives OpenClaw these things:
// - MCP tools (gpu_embed, gpu_similarity, ...): the Python MCP server that openclaw.plugin.json
//   declares under `mcpServers`; OpenClaw starts that one itself.
// - An embedding provider, `gpu-bridge`, for memory search (`memory.search.provider: "gpu-bridge"`),
//   registered below. Its embed/embedBatch go through the bridge's pool (balancing, failover,
//   sharding, deadlines) over the bridge's OpenAI-compatible API.
// - A media-understanding provider, also `gpu-bridge`, for speech to text (voice notes,
//   `openclaw infer audio transcribe --model gpu-bridge/default`), over the same bridge's
//   `/v1/audio/transcriptions`.
// - A speech provider, `gpu-bridge` too, for text to speech (voice replies, `openclaw infer tts convert`),
//   over the bridge's `/v1/audio/speech` (speech.js).
//
// Memory's document indexing goes to the pool as batch and its queries as interactive, so a re-index never
// holds a search up; a 429 of the pool's becomes an error with `retryAfterMs`, which the indexer waits out.
// The bridge process the providers share, and their HTTP calls to it: bridge.js.

import { PROVIDER_ID, bridgeFor, stopAll } from "./bridge.js";
import { speechProvider } from "./speech.js";

// The audio model OpenClaw hands the provider when none is named: the pool's default transcription model.
const POOL_DEFAULT_MODEL = "default";
// The class of a memory call on the pool (gpu_protocol/priority.py), by what OpenClaw embeds: a search's query
// is interactive (someone waits for it), indexing documents is batch (it must not hold the query up).
const PRIORITY_OF = { query: "interactive", document: "batch" };

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
        const priority = PRIORITY_OF[callOptions.inputType];
        const answer = await bridge.request("/v1/embeddings", { method: "POST", body, signal: callOptions.signal, priority });
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
    if (typeof api.registerSpeechProvider === "function") api.registerSpeechProvider(speechProvider(api));
    api.lifecycle?.onDispose?.(stopAll);
    api.on?.("gateway_stop", stopAll);
  },
};
