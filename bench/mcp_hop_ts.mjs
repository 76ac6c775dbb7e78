// The MCP hop seen by a TypeScript-SDK client (the SDK OpenClaw, Claude Desktop and the
// Inspector use). Run by bench/mcp_hop.py: node mcp_hop_ts.mjs <sdk-dir> <python> <host-url> <n> <encoding>...
// Prints one JSON line per encoding: best-of-5 seconds, or the error that ended the call.
import { pathToFileURL } from "node:url";

const [sdk, python, url, n, ...encodings] = process.argv.slice(2);
const { Client } = await import(pathToFileURL(`${sdk}/client/dist/index.mjs`));
const { StdioClientTransport } = await import(pathToFileURL(`${sdk}/client/dist/stdio.mjs`));
const texts = Array.from({ length: Number(n) }, (_, i) => `text ${i}`);

for (const encoding of encodings) {
  const transport = new StdioClientTransport({
    command: python,
    args: ["-m", "mcp_bridge", "--url", url, "--log-level", "warning"],
    env: { ...process.env },
    stderr: "ignore",
  });
  let transportError = "";
  transport.onerror = (e) => { transportError = String(e.message || e); };
  const client = new Client({ name: "hop-bench", version: "1" });
  await client.connect(transport);
  const call = () => client.callTool({ name: "gpu_embed", arguments: { texts, encoding } });
  try {
    await call();
    let best = Infinity;
    for (let i = 0; i < 5; i++) {
      const started = performance.now();
      const r = await call();
      if (r.isError || r.structuredContent.count !== Number(n)) throw new Error("bad result");
      best = Math.min(best, performance.now() - started);
    }
    console.log(JSON.stringify({ encoding, seconds: best / 1000 }));
  } catch (e) {
    console.log(JSON.stringify({ encoding, error: transportError || String(e.message || e) }));
  }
  await client.close().catch(() => {});
}
