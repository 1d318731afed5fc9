// The TypeScript MCP SDK client against an nbmcp server: elicitation answered by this client, and the MCP Apps
// metadata as a TS host sees it. Usage: node ts_client.mjs URL (token in $NBMCP_TOKEN); prints one JSON line.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { ElicitRequestSchema } from "@modelcontextprotocol/sdk/types.js";

const url = new URL(process.argv[2]);
const transport = new StreamableHTTPClientTransport(url, {
  requestInit: { headers: { Authorization: `Bearer ${process.env.NBMCP_TOKEN}` } },
});
const client = new Client({ name: "ts-interop", version: "1.0.0" }, { capabilities: { elicitation: {} } });
const asked = [];
client.setRequestHandler(ElicitRequestSchema, async (request) => {
  asked.push(request.params.message);
  return { action: "accept", content: { name: "ts", age: 7 } };
});
await client.connect(transport);
const { tools } = await client.listTools();
const view = tools.find((t) => t.name === "view_object");
const greeted = await client.callTool({ name: "greet", arguments: {} });
const page = await client.readResource({ uri: "ui://nbmcp/table" });
console.log(JSON.stringify({
  protocol: transport.protocolVersion ?? null,
  viewMeta: view?._meta ?? null,
  greet: greeted.content.map((c) => c.text).join("\n"),
  asked,
  pageMime: page.contents[0].mimeType,
  pageHasBridge: page.contents[0].text.includes("ui/initialize"),
}));
await client.close();
