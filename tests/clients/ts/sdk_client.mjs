// The TypeScript MCP SDK v2 client (npm @modelcontextprotocol/client) in a chosen protocol era against one server.
// Usage: node sdk_client.mjs SPEC_JSON, SPEC = {era: "legacy"|"modern", url?, token?, command?, args?, env?, cwd?,
// tool, arguments, resource?, prompt?, promptArguments?}. Prints one JSON line: era, protocol version, tool names,
// the call's result, and the resource's / prompt's text when asked.
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { StdioClientTransport, getDefaultEnvironment } from "@modelcontextprotocol/client/stdio";

const spec = JSON.parse(process.argv[2]);
const mode = spec.era === "modern" ? { pin: "2026-07-28" } : "legacy";
const client = new Client({ name: "nbmcp-ts-sdk-probe", version: "1.0.0" }, { versionNegotiation: { mode } });
const transport = spec.url
  ? new StreamableHTTPClientTransport(new URL(spec.url), {
      requestInit: { headers: { Authorization: `Bearer ${spec.token}` } },
    })
  : new StdioClientTransport({
      command: spec.command,
      args: spec.args,
      env: { ...getDefaultEnvironment(), ...(spec.env || {}) },
      cwd: spec.cwd,
      stderr: "ignore",
    });
await client.connect(transport);
const out = { era: client.getProtocolEra(), version: client.getNegotiatedProtocolVersion() };
out.tools = (await client.listTools()).tools.map((t) => t.name);
out.result = await client.callTool({ name: spec.tool, arguments: spec.arguments });
if (spec.resource) {
  out.resource = (await client.readResource({ uri: spec.resource })).contents[0].text;
}
if (spec.prompt) {
  const got = await client.getPrompt({ name: spec.prompt, arguments: spec.promptArguments || {} });
  out.prompt = got.messages[0].content.text;
}
await client.close();
console.log(JSON.stringify(out));
