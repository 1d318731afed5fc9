// The TypeScript MCP SDK v2 client (npm @modelcontextprotocol/client) connecting by URL alone, through the MCP
// authorization flow: on the 401 the SDK's auth() discovers the authorization server, registers (RFC 7591) or
// uses a Client ID Metadata Document URL, and hands the authorization URL to redirectToAuthorization, which
// prints it ({"authorize": URL}); the test signs the person in, consents, and writes the redirect URI with the
// code as one line on stdin. Then the client reconnects with the token and calls a tool.
// Usage: node oauth_client.mjs SPEC_JSON, SPEC = {era: "legacy"|"modern", url, tool, arguments, redirect,
// clientName, clientMetadataUrl?}. Prints one JSON line at the end: era, protocol version, the call's result,
// the client id, whether a refresh token came.
import { createInterface } from "node:readline";
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";

const spec = JSON.parse(process.argv[2]);
const mode = spec.era === "modern" ? { pin: "2026-07-28" } : "legacy";
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

class TestProvider {
  constructor() {
    this.info = undefined;
    this.saved = undefined;
    this.verifier = undefined;
    this.clientMetadataUrl = spec.clientMetadataUrl;
  }
  get redirectUrl() {
    return spec.redirect;
  }
  get clientMetadata() {
    return {
      client_name: spec.clientName,
      redirect_uris: [spec.redirect],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
    };
  }
  clientInformation() {
    return this.info;
  }
  saveClientInformation(info) {
    this.info = info;
  }
  tokens() {
    return this.saved;
  }
  saveTokens(tokens) {
    this.saved = tokens;
  }
  redirectToAuthorization(url) {
    this.authorizeUrl = url.toString();
    console.log(JSON.stringify({ authorize: this.authorizeUrl }));
  }
  saveCodeVerifier(verifier) {
    this.verifier = verifier;
  }
  codeVerifier() {
    return this.verifier;
  }
  // which authorization server the sign-in started with (SEP-2352): checked again when the code comes back
  saveDiscoveryState(state) {
    this.discovery = state;
  }
  discoveryState() {
    return this.discovery;
  }
}

const provider = new TestProvider();
const connect = async () => {
  const client = new Client({ name: "nbmcp-ts-oauth", version: "1.0.0" }, { versionNegotiation: { mode } });
  const transport = new StreamableHTTPClientTransport(new URL(spec.url), { authProvider: provider });
  return { client, transport, connected: client.connect(transport) };
};

let { client, transport, connected } = await connect();
try {
  await connected;
} catch (error) {
  if (!provider.authorizeUrl) throw error; // not the sign-in the flow asks for
  const answer = await lines.next(); // the redirect URI the browser arrived at
  const callback = new URL(answer.value.trim());
  await transport.finishAuth(callback.searchParams);
  ({ client, transport, connected } = await connect());
  await connected;
}
const out = { era: client.getProtocolEra(), version: client.getNegotiatedProtocolVersion() };
out.result = await client.callTool({ name: spec.tool, arguments: spec.arguments });
out.clientId = provider.clientInformation()?.client_id;
out.refreshToken = Boolean(provider.tokens()?.refresh_token);
await client.close();
console.log(JSON.stringify(out));
process.exit(0);
