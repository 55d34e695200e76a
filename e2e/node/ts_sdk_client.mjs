// An MCP agent built on the official TypeScript SDK (@modelcontextprotocol/sdk), driven by
// e2e/test_node_clients.py. The SDK does the OAuth work by itself (discovery, registration, PKCE, the token
// exchange); this script only plays the application around it, as the SDK's examples do.
//
//   node ts_sdk_client.mjs --server <mcp url> --redirect-url <loopback url> --delegation <json arguments>
//                          [--vouchsim-person] [--retry-token]
//
// It talks to the test in JSON lines: one object per line, each with a "type", in this order.
//   out  {"type":"http","method","path","status","retry_after"}   each HTTP request the SDK makes, whenever it
//                                                  makes one (retry_after: the answer's Retry-After, or null)
//   out  {"type":"registered","client_id","token_endpoint_auth_method","has_secret"}
//   out  {"type":"authorize","url"}                 the SDK wants the person's browser at this URL
//   in   {"type":"redirect","location"}             where the authorization page sent that browser back
//   out  {"type":"tokens","token_type","scope","expires_in","has_refresh_token"}
//   out  {"type":"connected","protocol_version","server"}
//   out  {"type":"tools","names"}
//   out  {"type":"identity","result"}               the CallToolResult of identity_get
//   out  {"type":"delegation","result"}             the CallToolResult of delegation_request (it waits)
//   out  {"type":"done"}, then exit 0; or, at any point, {"type":"error","message"} and exit 1.
// With --retry-token, a code exchange the server refuses with temporarily_unavailable is tried once more after
// the answer's Retry-After seconds, and {"type":"token_retried","error","retry_after"} says so.
// With --vouchsim-person, nothing is read: the redirect handler completes the page itself with
// `vouchsim companion authorize-url` exactly as the README's "Other languages" recipe shows (its lines are
// checked against the README; the device is the one VOUCHSIM_COMPANION_STATE names, as the side-car sets it),
// and "authorize" is followed by {"type":"redirected","location"}.
import { execFileSync } from "node:child_process";
import { createInterface } from "node:readline";
import { randomBytes } from "node:crypto";
import { parseArgs } from "node:util";

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { UnauthorizedError } from "@modelcontextprotocol/sdk/client/auth.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const { values: args } = parseArgs({
  options: {
    server: { type: "string" },
    "redirect-url": { type: "string" },
    delegation: { type: "string" },
    "vouchsim-person": { type: "boolean", default: false },
    "retry-token": { type: "boolean", default: false },
    timeout: { type: "string", default: "25" },
  },
});

const emit = (message) => process.stdout.write(JSON.stringify(message) + "\n");
const fail = (error) => {
  emit({ type: "error", message: String(error?.stack ?? error) });
  process.exit(1);
};
process.on("unhandledRejection", fail);
// Never outlive the test, even if it forgets to kill us.
setTimeout(() => fail(new Error(`gave up after ${args.timeout} s`)), Number(args.timeout) * 1000).unref();

// The test's answers, one JSON line each, read as they are needed.
const stdin = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function receive(type) {
  const { value, done } = await stdin.next();
  if (done) throw new Error(`stdin closed while waiting for ${type}`);
  const message = JSON.parse(value);
  if (message.type !== type) throw new Error(`expected ${type}, got ${value}`);
  return message;
}

// Records what the SDK sends (auth discovery and registration included: they go through the same fetch).
let lastRetryAfter = null;
async function recordingFetch(input, init) {
  const response = await fetch(input, init);
  const request = input instanceof Request ? input : undefined;
  const method = init?.method ?? request?.method ?? "GET";
  const retryAfter = response.headers.get("retry-after");
  lastRetryAfter = retryAfter;
  emit({ type: "http", method, path: new URL(request?.url ?? input).pathname, status: response.status,
    retry_after: retryAfter });
  return response;
}

// The code exchange; with --retry-token, once more after a temporarily_unavailable answer's Retry-After.
async function finishAuth(transport, code) {
  try {
    await transport.finishAuth(code);
  } catch (error) {
    if (!args["retry-token"] || error?.constructor?.errorCode !== "temporarily_unavailable") throw error;
    const seconds = Number(lastRetryAfter ?? "1");
    emit({ type: "token_retried", error: error.constructor.name, retry_after: seconds });
    await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
    await transport.finishAuth(code);
  }
}

// The OAuthClientProvider interface, in memory: one agent, one session.
class MemoryProvider {
  constructor(redirectUrl) {
    this.redirectUrl = redirectUrl;
    this.expectedState = randomBytes(16).toString("base64url");
    this.authorizationUrl = undefined;
  }
  get clientMetadata() {
    return {
      client_name: "Vouchsim e2e (TypeScript SDK)",
      redirect_uris: [this.redirectUrl],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
    };
  }
  state() {
    return this.expectedState;
  }
  clientInformation() {
    return this.client;
  }
  saveClientInformation(client) {
    this.client = client; // stored unchanged (with the SDK's `issuer` stamp), as the interface asks
    emit({
      type: "registered",
      client_id: client.client_id,
      token_endpoint_auth_method: client.token_endpoint_auth_method,
      has_secret: Boolean(client.client_secret),
    });
  }
  tokens() {
    return this.savedTokens;
  }
  saveTokens(tokens) {
    this.savedTokens = tokens;
    emit({
      type: "tokens",
      token_type: tokens.token_type,
      scope: tokens.scope,
      expires_in: tokens.expires_in,
      has_refresh_token: Boolean(tokens.refresh_token),
    });
  }
  redirectToAuthorization(url) {
    // A desktop app would open a browser here; the test is the browser, or `vouchsim companion authorize-url`.
    this.authorizationUrl = url;
    emit({ type: "authorize", url: url.href });
    if (args["vouchsim-person"]) {
      this.redirect = completeWithVouchsim(url.href);
      emit({ type: "redirected", location: this.redirect.href });
    }
  }
  saveCodeVerifier(verifier) {
    this.verifier = verifier;
  }
  codeVerifier() {
    if (!this.verifier) throw new Error("no code verifier saved");
    return this.verifier;
  }
}

// The README's redirect handler, word for word (e2e/test_readme_recipes.py compares them).
function completeWithVouchsim(url) {
  const out = execFileSync("vouchsim", ["companion", "authorize-url", url], { encoding: "utf8" });
  const redirect = new URL(out.trim().split("\n").pop());  // ?code=…&state=…&iss=…
  return redirect;
}

async function main() {
  const serverUrl = new URL(args.server);
  const provider = new MemoryProvider(args["redirect-url"]);
  const client = new Client({ name: "vouchsim-e2e-ts-sdk", version: "0" });
  const newTransport = () =>
    new StreamableHTTPClientTransport(serverUrl, { authProvider: provider, fetch: recordingFetch });

  // The SDK's documented pattern: connect → UnauthorizedError (after redirectToAuthorization) → the person
  // authorizes → finishAuth(code) → connect again on a new transport.
  let transport = newTransport();
  try {
    await client.connect(transport);
    throw new Error("connected without authorization: the server did not ask for a token");
  } catch (error) {
    if (!(error instanceof UnauthorizedError)) throw error;
  }
  if (!provider.authorizationUrl) throw new Error("UnauthorizedError without a redirect to authorization");
  const location = provider.redirect?.href ?? (await receive("redirect")).location;
  const callback = new URL(location);
  // What the app's callback handler checks before using the code: its own redirect URI and its own state.
  if (`${callback.origin}${callback.pathname}` !== args["redirect-url"]) throw new Error(`redirected to ${location}`);
  if (callback.searchParams.get("state") !== provider.expectedState) throw new Error("state mismatch");
  const code = callback.searchParams.get("code");
  if (!code) throw new Error(`no code in ${location}`);
  await finishAuth(transport, code);

  transport = newTransport();
  await client.connect(transport);
  emit({ type: "connected", protocol_version: transport.protocolVersion, server: client.getServerVersion() });

  const { tools } = await client.listTools();
  emit({ type: "tools", names: tools.map((tool) => tool.name) });

  // callTool validates structuredContent against the tool's outputSchema (listed above).
  const identity = await client.callTool({ name: "identity_get", arguments: {} });
  emit({ type: "identity", result: identity });

  const delegation = await client.callTool({ name: "delegation_request", arguments: JSON.parse(args.delegation) });
  emit({ type: "delegation", result: delegation });

  await transport.terminateSession(); // DELETE /mcp: the session ends on the server too
  await client.close();
  emit({ type: "done" });
}

main().then(() => process.exit(0), fail);
