// The TypeScript MCP SDK client against the in-kernel server: completion and logging.
// Usage: node completion_logging.mjs URL TOKEN (the SDK is resolved from NODE_PATH). Prints one JSON line.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { LoggingMessageNotificationSchema } from "@modelcontextprotocol/sdk/types.js";

const [url, token] = process.argv.slice(2);
const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { Authorization: `Bearer ${token}` } },
});
const client = new Client({ name: "ts-probe", version: "1.0.0" });
const logs = [];
client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => {
  logs.push([n.params.level, n.params.data]);
});
await client.connect(transport);
const out = { capabilities: client.getServerCapabilities() };
out.names = (await client.complete({
  ref: { type: "ref/resource", uri: "nbmcp://objects/{name}" },
  argument: { name: "name", value: "s" },
})).completion.values;
out.regions = (await client.complete({
  ref: { type: "ref/prompt", name: "explain" },
  argument: { name: "region", value: "a" },
})).completion.values;
out.unknown = (await client.complete({
  ref: { type: "ref/prompt", name: "no_such_prompt" },
  argument: { name: "x", value: "" },
})).completion.values;
await client.setLoggingLevel("warning");
const result = await client.callTool({ name: "chatty", arguments: {} });
out.result = result.content.map((c) => c.text).join("\n");
out.logs = logs;
try {
  await client.request({ method: "logging/setLevel", params: { level: "loud" } }, LoggingMessageNotificationSchema.partial());
  out.badLevel = "accepted";
} catch (e) {
  out.badLevel = e.code;
}
await transport.terminateSession().catch(() => {});
await client.close();
console.log(JSON.stringify(out));
