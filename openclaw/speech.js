// Text to speech for OpenClaw (`tts.provider: "gpu-bridge"`, `openclaw infer tts convert`): OpenAI's
// `POST /v1/audio/speech` on the plugin's own bridge, which speaks on the pool (a long text's sentences on
// several hosts at once, a dead host's sentences redone elsewhere).
//
// What OpenClaw asks for decides the format: a voice note (Telegram, WhatsApp) gets Opus in Ogg, an audio file
// MP3, and telephony raw 16-bit PCM at 24 kHz (what the bridge's `pcm` is). Settings, all optional, in
// `tts.providers.gpu-bridge`: `speakerVoice` (an OpenAI voice name such as alloy, which a host speaks with its
// default voice, or a host's own voice), `model` (the pool's voice model; default: the hosts' default),
// `speed` (0.25-4) and `responseFormat` (mp3, opus, aac, flac, wav: for audio files).

import { PROVIDER_ID, bridgeFor } from "./bridge.js";

const SPEECH_PATH = "/v1/audio/speech";
const VOICES_PATH = "/v1/audio/voices";
// OpenAI's voice names: every host answers to them (with its default voice unless its operator maps them).
const OPENAI_VOICES = ["alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse"];
const DEFAULT_VOICE = "alloy";
const FILE_FORMATS = ["mp3", "opus", "aac", "flac", "wav"];
const EXTENSIONS = { mp3: ".mp3", opus: ".opus", aac: ".aac", flac: ".flac", wav: ".wav", pcm: ".pcm" };
const TELEPHONY_RATE = 24_000; // the bridge's `pcm`: s16le mono at 24 kHz
// The first call may wait for the bridge to start (and, with no hosts configured, a local service to load).
const DEFAULT_TIMEOUT_MS = 120_000;

function text(value) {
  return typeof value === "string" && value.trim() ? value.trim() : undefined;
}

/** This provider's settings from OpenClaw's `tts.providers.gpu-bridge` (or the provider map it hands us). */
function settingsOf(raw) {
  const isWholeTts = raw?.providers !== undefined || raw?.provider !== undefined;
  const section = raw?.providers?.[PROVIDER_ID] ?? raw?.[PROVIDER_ID] ?? (isWholeTts ? {} : raw ?? {});
  const format = text(section.responseFormat)?.toLowerCase();
  if (format && !FILE_FORMATS.includes(format)) {
    throw new Error(`gpu-bridge: tts responseFormat must be one of ${FILE_FORMATS.join(", ")}, not ${format}`);
  }
  const speed = typeof section.speed === "number" && Number.isFinite(section.speed) ? section.speed : undefined;
  return {
    model: text(section.model),
    speakerVoice: text(section.speakerVoice) ?? text(section.voice),
    ...(speed === undefined ? {} : { speed }),
    ...(format ? { responseFormat: format } : {}),
  };
}

/** The JSON body of one `/v1/audio/speech` call. */
function speechBody(input, settings, overrides, format) {
  const model = text(overrides?.model) ?? text(overrides?.modelId) ?? settings.model;
  const voice = text(overrides?.speakerVoice) ?? text(overrides?.voice) ?? text(overrides?.voiceId)
    ?? settings.speakerVoice ?? DEFAULT_VOICE;
  const speed = typeof overrides?.speed === "number" ? overrides.speed : settings.speed;
  return { input, voice, response_format: format, ...(model ? { model } : {}), ...(speed === undefined ? {} : { speed }) };
}

export function speechProvider(api) {
  async function speak(req, format) {
    const settings = settingsOf(req.providerConfig);
    const bridge = bridgeFor(api.pluginConfig, api.logger);
    const timeoutMs = req.timeoutMs > 0 ? req.timeoutMs : DEFAULT_TIMEOUT_MS;
    bridge.users += 1; // the memory provider's close() leaves the bridge running meanwhile
    try {
      return await bridge.requestBytes(SPEECH_PATH, {
        method: "POST",
        body: speechBody(req.text, settings, req.providerOverrides, format),
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (err) {
      if (err?.name === "TimeoutError") throw new Error(`gpu-bridge: no speech within ${Math.round(timeoutMs / 1000)}s`);
      throw err;
    } finally {
      bridge.users -= 1;
    }
  }

  return {
    id: PROVIDER_ID,
    label: "GPU bridge (pooled GPU hosts)",
    defaultTimeoutMs: DEFAULT_TIMEOUT_MS,
    voices: OPENAI_VOICES,
    resolveConfig: ({ rawConfig }) => settingsOf(rawConfig),
    // No credential of OpenClaw's: the plugin starts its own bridge, with a token of its own.
    isConfigured: () => true,
    async listVoices() {
      // A bridge that lists no voices of its own (404) still speaks OpenAI's names.
      const listing = await bridgeFor(api.pluginConfig, api.logger).request(VOICES_PATH).catch((err) => {
        if (err?.status === 404) return undefined;
        throw err;
      });
      const own = (listing?.voices ?? []).map((voice) => (typeof voice === "string" ? voice : voice?.id)).filter(Boolean);
      return [...new Set([...OPENAI_VOICES, ...own])].map((id) => ({ id, name: id }));
    },
    async synthesize(req) {
      const settings = settingsOf(req.providerConfig);
      const format = req.target === "voice-note" ? "opus" : settings.responseFormat ?? "mp3";
      return {
        audioBuffer: await speak(req, format),
        outputFormat: format,
        fileExtension: EXTENSIONS[format],
        voiceCompatible: req.target === "voice-note" && format === "opus",
      };
    },
    async synthesizeTelephony(req) {
      return { audioBuffer: await speak(req, "pcm"), outputFormat: "pcm", sampleRate: TELEPHONY_RATE };
    },
  };
}
