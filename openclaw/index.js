// OpenClaw loads a native plugin through a JavaScript entry point, so this one exists.
// It registers nothing: the plugin's tools come from the Python MCP server that
// openclaw.plugin.json declares under `mcpServers` (the `gpu-bridge` console script).
export default {
  id: "openclaw-gpu-bridge",
  register() {},
};
