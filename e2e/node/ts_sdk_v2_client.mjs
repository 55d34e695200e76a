// An MCP agent built on the TypeScript SDK v2 client (@modelcontextprotocol/client), driven by
// e2e/test_mcp_2026_node_clients.py. The SDK does the OAuth work and the 2026-07-28 version negotiation by itself
// (server/discover, then the per-request `_meta` envelope and routing headers); this script only plays the
// application around it.
//
//   node ts_sdk_v2_client.mjs --server <mcp url> --redirect-url <loopback url> --delegation <json arguments>
//                             [--negotiation auto|default] [--tasks] [--client-metadata-url <https url>]
//
// --negotiation auto: `versionNegotiation: { mode: "auto" }`, the SDK's 2026 negotiation; default: no option
// at all (the package's own default). --tasks: the client declares the Tasks extension
// (io.modelcontextprotocol/tasks) in its capabilities, so a waiting delegation_request comes back as a task,
// polled with tasks/get through the client's generic request method (2.4.0 does not export its Tasks client
// extension yet) at the pollIntervalMs the server asks for. --client-metadata-url: the provider's
// `clientMetadataUrl` (a Client ID Metadata Document): when the server advertises
// client_id_metadata_document_supported, the SDK uses that URL as its client_id and registers nothing.
//
// JSON lines, each with a "type", in this order:
//   out  {"type":"authorize","url"}                 the SDK wants the person's browser at this URL
//   in   {"type":"redirect","location"}             where the authorization page sent that browser back
//   out  {"type":"connected","protocol_version","era","server","discover"}
//   out  {"type":"tools","names"}
//   out  {"type":"identity","result"}
//   without --tasks: out {"type":"delegation","result"}   the CallToolResult (the call waits for the device)
//   with --tasks:    out {"type":"task","result"}         the CreateTaskResult
//                    out {"type":"poll","result"}          each tasks/get answer, until a terminal status
//                    out {"type":"delegation","result"}    the completed task's result
//   out  {"type":"http","method","path","status","protocol_version","session"}   each HTTP request, as made
//   out  {"type":"done"}, then exit 0; or {"type":"error","message"} and exit 1.
import { createInterface } from "node:readline";
import { randomBytes } from "node:crypto";
import { parseArgs } from "node:util";

import { Client, StreamableHTTPClientTransport, UnauthorizedError } from "@modelcontextprotocol/client";

const { values: args } = parseArgs({
  options: {
    server: { type: "string" },
    "redirect-url": { type: "string" },
    delegation: { type: "string" },
    negotiation: { type: "string", default: "auto" },
    tasks: { type: "boolean", default: false },
    "client-metadata-url": { type: "string" },
    timeout: { type: "string", default: "60" },
  },
});

const emit = (message) => process.stdout.write(JSON.stringify(message) + "\n");
const fail = (error) => {
  emit({ type: "error", message: String(error?.stack ?? error) });
  process.exit(1);
};
process.on("unhandledRejection", fail);
setTimeout(() => fail(new Error(`gave up after ${args.timeout} s`)), Number(args.timeout) * 1000).unref();

const stdin = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function receive(type) {
  const { value, done } = await stdin.next();
  if (done) throw new Error(`stdin closed while waiting for ${type}`);
  const message = JSON.parse(value);
  if (message.type !== type) throw new Error(`expected ${type}, got ${value}`);
  return message;
}

// Records what the SDK sends: the path, the version header and any session id, and the answer's status.
async function recordingFetch(input, init) {
  const response = await fetch(input, init);
  const request = input instanceof Request ? input : undefined;
  const headers = new Headers(init?.headers ?? request?.headers);
  emit({
    type: "http",
    method: init?.method ?? request?.method ?? "GET",
    path: new URL(request?.url ?? input).pathname,
    status: response.status,
    protocol_version: headers.get("mcp-protocol-version"),
    session: headers.get("mcp-session-id") ?? response.headers.get("mcp-session-id"),
  });
  return response;
}

class MemoryProvider {
  constructor(redirectUrl, clientMetadataUrl) {
    this.redirectUrl = redirectUrl;
    if (clientMetadataUrl) this.clientMetadataUrl = clientMetadataUrl;
    this.expectedState = randomBytes(16).toString("base64url");
  }
  get clientMetadata() {
    return {
      client_name: "Vouchsim e2e (TypeScript SDK v2)",
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
    this.client = client;
  }
  tokens() {
    return this.savedTokens;
  }
  saveTokens(tokens) {
    this.savedTokens = tokens;
  }
  redirectToAuthorization(url) {
    this.authorizationUrl = url;
    emit({ type: "authorize", url: url.href });
  }
  saveCodeVerifier(verifier) {
    this.verifier = verifier;
  }
  codeVerifier() {
    if (!this.verifier) throw new Error("no code verifier saved");
    return this.verifier;
  }
}

// A result schema that accepts what the server sent as it is (Standard Schema v1): the test checks the shape.
const asSent = { "~standard": { version: 1, vendor: "vouchsim-e2e", validate: (value) => ({ value }) } };
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const TERMINAL = new Set(["completed", "failed", "cancelled"]);

// 2.4.0's Client.request() refuses every resultType but "complete" and "input_required" (its decoder knows no
// "task" yet: the Tasks client extension ships in a later release), so the one call that creates a task goes out
// through the SDK's own transport (its auth, its routing headers), stamped with the `_meta` envelope the client
// puts on every 2026-07-28 request; its answer is taken off the transport before the client sees it. The polls,
// whose results are "complete", go through client.request().
let ownIds = 0;
async function sendThroughTransport(client, transport, call) {
  const id = `vouchsim-e2e-${++ownIds}`;
  const meta = {
    "io.modelcontextprotocol/protocolVersion": client.getNegotiatedProtocolVersion(),
    "io.modelcontextprotocol/clientInfo": { name: "vouchsim-e2e-ts-sdk-v2", version: "0" },
    "io.modelcontextprotocol/clientCapabilities": { extensions: { "io.modelcontextprotocol/tasks": {} } },
  };
  const delivered = transport.onmessage;
  const answer = new Promise((resolve) => {
    transport.onmessage = (message, extra) => {
      if (message.id !== id) return delivered(message, extra);
      transport.onmessage = delivered;
      resolve(message);
    };
  });
  await transport.send({ jsonrpc: "2.0", id, method: call.method, params: { ...call.params, _meta: meta } });
  const message = await answer;
  if (message.error) throw new Error(`${call.method} failed: ${JSON.stringify(message.error)}`);
  return message.result;
}

async function main() {
  const serverUrl = new URL(args.server);
  const provider = new MemoryProvider(args["redirect-url"], args["client-metadata-url"]);
  const options = {};
  if (args.negotiation === "auto") options.versionNegotiation = { mode: "auto" };
  if (args.tasks) options.capabilities = { extensions: { "io.modelcontextprotocol/tasks": {} } };
  const client = new Client({ name: "vouchsim-e2e-ts-sdk-v2", version: "0" }, options);
  const newTransport = () =>
    new StreamableHTTPClientTransport(serverUrl, { authProvider: provider, fetch: recordingFetch });

  // connect → UnauthorizedError (after redirectToAuthorization) → the person authorizes → finishAuth → connect.
  let transport = newTransport();
  try {
    await client.connect(transport);
    throw new Error("connected without authorization: the server did not ask for a token");
  } catch (error) {
    if (!(error instanceof UnauthorizedError)) throw error;
  }
  if (!provider.authorizationUrl) throw new Error("UnauthorizedError without a redirect to authorization");
  const callback = new URL((await receive("redirect")).location);
  if (`${callback.origin}${callback.pathname}` !== args["redirect-url"]) throw new Error(`redirected to ${callback}`);
  if (callback.searchParams.get("state") !== provider.expectedState) throw new Error("state mismatch");
  await transport.finishAuth(callback.searchParams);

  transport = newTransport();
  await client.connect(transport);
  emit({
    type: "connected",
    protocol_version: client.getNegotiatedProtocolVersion(),
    era: client.getProtocolEra(),
    server: client.getServerVersion(),
    discover: client.getDiscoverResult() ?? null,
  });

  const { tools } = await client.listTools();
  emit({ type: "tools", names: tools.map((tool) => tool.name) });
  emit({ type: "identity", result: await client.callTool({ name: "identity_get", arguments: {} }) });

  const call = { method: "tools/call", params: { name: "delegation_request", arguments: JSON.parse(args.delegation) } };
  if (!args.tasks) {
    emit({ type: "delegation", result: await client.callTool(call.params) });
  } else {
    const task = await sendThroughTransport(client, transport, call);
    emit({ type: "task", result: task });
    if (task.resultType !== "task") throw new Error(`expected a task, got ${JSON.stringify(task)}`);
    let state = task;
    while (!TERMINAL.has(state.status)) {
      await sleep(state.pollIntervalMs ?? 1000);
      state = await client.request({ method: "tasks/get", params: { taskId: task.taskId } }, asSent);
      emit({ type: "poll", result: state });
    }
    emit({ type: "delegation", result: state.result ?? null });
  }
  await client.close();
  emit({ type: "done" });
}

main().then(() => process.exit(0), fail);
