#!/usr/bin/env node
// A scripted MCP client on the official TypeScript SDK (@modelcontextprotocol/sdk 1.32.2:
// `Client` + `StreamableHTTPClientTransport`) for Portcullis end-to-end tests. The Node
// counterpart of mcp_client.py: same command line, same steps, one JSON line per step.
//
// Usage:
//   node ts_client.mjs --url http://127.0.0.1:PORT/mcp [--protocol-version V]
//       [--header NAME=VALUE ...] [--timeout S] [--debug] --script FILE|-
//
// The SDK is loaded from $PORTCULLIS_E2E_NODE_MODULES (what `cargo xtask node` prints),
// else from tests/e2e/node_modules (`npm ci` in tests/e2e).
//
// --script is a JSON list of steps, each one of
//   {"op": "list_tools"}                     (every list op takes an optional "params", e.g.
//                                             {"cursor": "..."})
//   {"op": "call_tool", "name": "echo", "arguments": {...}, "progress": true}
//        (progress: the SDK sends a progressToken; what arrives is in result._progress)
//   {"op": "list_prompts"}  {"op": "get_prompt", "name": "...", "arguments": {...}}
//   {"op": "list_resources"}  {"op": "list_resource_templates"}
//   {"op": "read_resource", "uri": "..."}  {"op": "subscribe_resource", "uri": "..."}
//   {"op": "complete", "ref": {"type": "ref/prompt", "name": "..."},
//        "argument": {"name": "...", "value": "..."}, "context": {...}}
//   {"op": "set_logging_level", "level": "debug"}
//   {"op": "ping"}
//   {"op": "request", "method": "any/method", "params": {...}}
//        (through Client.request with the SDK's loose ResultSchema: any object result)
//   {"op": "notify", "method": "notifications/...", "params": {...}}
//   {"op": "sleep", "ms": 500}               (wait; notifications meanwhile are printed)
//   {"op": "terminate_session"}              (the SDK's DELETE)
// Any step may carry "timeout_ms" (default: --timeout).
//
// Output (stdout), one JSON line each, keys sorted:
//   {"op": "connect", "ok": true, "protocol_version", "server_info", "server_capabilities",
//    "instructions", "session_id", "http": [...]}
//   per step  {"op", "ok": true, "result": <what the SDK returned>, "http": [...]}
//             {"op", "ok": false, "error": {...}, "http": [...], ["transport_error": "..."]}
//   whenever the client receives something outside a response, as it arrives (so before
//   the line of the step during which it came; "step" is that step's index, -1 = connect):
//     {"op": "notification", "method", "params", "step"}   e.g. notifications/message
//        (logging), notifications/progress, notifications/tools/list_changed
//     {"op": "server_request", "method", "params", "id", "step"}   e.g. sampling; the SDK
//        answers it itself (this client declares no capabilities: -32601)
//     {"op": "client_error", "message", "step"}   what the SDK reported to onerror: a
//        message it could not parse, a failed GET stream, "SSE stream disconnected", ...
//
// "error" says what the SDK threw:
//   kind "jsonrpc"  an McpError for a JSON-RPC error response seen on the wire:
//                   code, message, data exactly as sent
//   kind "sdk"      an McpError the SDK made up (timeout -32001, connection closed
//                   -32000, output schema mismatch -32602, ...): code, message, data
//   kind "http"     StreamableHTTPError: the SDK got a non-2xx answer (code = the HTTP
//                   status; it never parses a JSON-RPC error out of a non-2xx body) or an
//                   unexpected content type (code -1); also "transport_error":
//                   "HTTP <status>: <body>" as mcp_client.py prints it
//   kind "other"    anything else (fetch failed, schema validation of a result, ...),
//                   with "transport_error" too
//   and always "name" (the JS error class) and "sdk_message" (err.message verbatim).
// "http" lists every HTTP exchange of the step: {"method", "status", "content_type",
// "headers": [[name, value], ...] (as fetch exposes them: lower-case, duplicates joined),
// "body" (when status >= 400)} or {"method", "fetch_error"} when there was no answer.
//
// --protocol-version: the SDK's Client.connect() always offers LATEST_PROTOCOL_VERSION
// (2025-11-25, the default here). For another of its SUPPORTED_PROTOCOL_VERSIONS
// (2025-06-18, 2025-03-26, 2024-11-05, 2024-10-07) this client does what connect() does
// itself: Protocol.connect(transport), the initialize request with that version, a check
// that the server echoed it, transport.setProtocolVersion(), notifications/initialized;
// the SDK's private _serverCapabilities/_serverVersion/_instructions are set as connect()
// sets them. The wire has the SDK's usual shape. The SDK has no 2026-07-28 support.
//
// Exit status: 0 when the script ran to the end (whatever the steps' outcomes), 2 when
// connecting failed, 1 on bad usage.

import { readFileSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const nodeModules = process.env.PORTCULLIS_E2E_NODE_MODULES || join(here, 'node_modules');
const sdkRoot = join(nodeModules, '@modelcontextprotocol', 'sdk');
if (!existsSync(join(sdkRoot, 'package.json'))) {
  process.stderr.write(
    `ts_client.mjs: no @modelcontextprotocol/sdk under ${nodeModules}: run \`cargo xtask node\` ` +
      'and set PORTCULLIS_E2E_NODE_MODULES to what it prints (or `npm ci` in tests/e2e)\n'
  );
  process.exit(1);
}
// The package's "exports" map ./* to ./dist/esm/* for import.
const sdk = rel => import(pathToFileURL(join(sdkRoot, 'dist', 'esm', rel)).href);
const { Client } = await sdk('client/index.js');
const { StreamableHTTPClientTransport, StreamableHTTPError } = await sdk('client/streamableHttp.js');
const types = await sdk('types.js');
const { McpError, ResultSchema, InitializeResultSchema, LATEST_PROTOCOL_VERSION, SUPPORTED_PROTOCOL_VERSIONS } = types;

const CLIENT_INFO = { name: 'portcullis-e2e-ts-client', version: '1.0.0' };

function usage(msg) {
  process.stderr.write(`ts_client.mjs: ${msg}\n`);
  process.exit(1);
}

function parseArgs(argv) {
  const args = { headers: [], timeout: 20, protocolVersion: LATEST_PROTOCOL_VERSION, debug: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      if (i + 1 >= argv.length) usage(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--url') args.url = val();
    else if (a === '--protocol-version') args.protocolVersion = val();
    else if (a === '--header') {
      const h = val();
      const eq = h.indexOf('=');
      if (eq <= 0) usage(`--header wants NAME=VALUE, got ${JSON.stringify(h)}`);
      args.headers.push([h.slice(0, eq).trim(), h.slice(eq + 1)]);
    } else if (a === '--script') args.script = val();
    else if (a === '--timeout') args.timeout = Number(val());
    else if (a === '--debug') args.debug = true;
    else usage(`unknown argument ${a}`);
  }
  if (!args.url || !args.script) usage('--url and --script are required');
  if (!SUPPORTED_PROTOCOL_VERSIONS.includes(args.protocolVersion)) {
    usage(`--protocol-version must be one of ${SUPPORTED_PROTOCOL_VERSIONS.join(', ')}`);
  }
  return args;
}

// JSON with sorted keys (as mcp_client.py's sort_keys), so lines compare as text too.
function sorted(v) {
  if (Array.isArray(v)) return v.map(sorted);
  if (v && typeof v === 'object') {
    const out = {};
    for (const k of Object.keys(v).sort()) if (v[k] !== undefined) out[k] = sorted(v[k]);
    return out;
  }
  return v;
}

function emit(line) {
  process.stdout.write(JSON.stringify(sorted(line)) + '\n');
}

const args = parseArgs(process.argv.slice(2));
const scriptText = args.script === '-' ? readFileSync(0, 'utf8') : readFileSync(args.script, 'utf8');
const steps = JSON.parse(scriptText);
if (!Array.isArray(steps)) usage('--script must be a JSON list of steps');

let stepIndex = -1;
let httpLog = [];
const sentIds = new Set(); // request ids the current step sent
const wireErrors = new Map(); // id -> JSON-RPC error object as received

// fetch, recording every exchange of the step.
async function recordingFetch(url, init) {
  const method = (init?.method || 'GET').toUpperCase();
  let response;
  try {
    response = await fetch(url, init);
  } catch (e) {
    httpLog.push({ method, fetch_error: `${e?.name}: ${e?.message}${e?.cause ? ` (${e.cause.code || e.cause.message})` : ''}` });
    throw e;
  }
  const entry = {
    method,
    status: response.status,
    content_type: response.headers.get('content-type') || '',
    headers: [...response.headers.entries()]
  };
  if (response.status >= 400) {
    try {
      entry.body = (await response.clone().text()).slice(0, 4000);
    } catch (e) {
      entry.body = `<unreadable: ${e}>`;
    }
  }
  httpLog.push(entry);
  return response;
}

function takeHttp() {
  const out = httpLog;
  httpLog = [];
  return out;
}

const transport = new StreamableHTTPClientTransport(new URL(args.url), {
  requestInit: { headers: Object.fromEntries(args.headers) },
  fetch: recordingFetch
});

// Set before connect: Protocol.connect() chains these, so this sees every message first.
transport.onmessage = message => {
  if ('method' in message && 'id' in message) {
    emit({ op: 'server_request', method: message.method, params: message.params, id: message.id, step: stepIndex });
  } else if ('method' in message) {
    emit({ op: 'notification', method: message.method, params: message.params, step: stepIndex });
  } else if ('error' in message && message.id !== undefined) {
    wireErrors.set(message.id, message.error);
  }
};
transport.onerror = error => {
  emit({ op: 'client_error', message: `${error?.name || 'Error'}: ${error?.message ?? error}`, step: stepIndex });
  if (args.debug) console.error(error);
};
const sendOrig = transport.send.bind(transport);
transport.send = (message, options) => {
  if (message && 'method' in message && 'id' in message) sentIds.add(message.id);
  return sendOrig(message, options);
};

const client = new Client(CLIENT_INFO, { capabilities: {} });

function failure(op, err) {
  const http = takeHttp();
  const line = { op, ok: false, http };
  const error = { name: err?.constructor?.name || err?.name || 'Error', sdk_message: String(err?.message ?? err) };
  if (err instanceof McpError) {
    const wire = [...sentIds].map(id => wireErrors.get(id)).find(e => e && e.code === err.code);
    if (wire) {
      Object.assign(error, { kind: 'jsonrpc', code: wire.code, message: wire.message, data: wire.data });
    } else {
      Object.assign(error, {
        kind: 'sdk',
        code: err.code,
        message: String(err.message).replace(/^MCP error -?\d+: /, ''),
        data: err.data
      });
    }
  } else if (err instanceof StreamableHTTPError) {
    error.kind = 'http';
    error.code = err.code;
    error.message = err.message;
    const bad = http.filter(e => e.status >= 400).pop();
    line.transport_error = bad ? `HTTP ${bad.status}: ${bad.body ?? ''}` : err.message;
  } else {
    error.kind = 'other';
    error.message = String(err?.message ?? err);
    const cause = err?.cause ? ` (${err.cause.code || err.cause.message})` : '';
    line.transport_error = `${error.name}: ${error.message}${cause}`;
  }
  line.error = error;
  return line;
}

async function connect(version, timeout) {
  if (version === LATEST_PROTOCOL_VERSION) {
    await client.connect(transport, { timeout });
    return;
  }
  // What Client.connect() does, with another protocolVersion (it offers no knob).
  const Protocol = Object.getPrototypeOf(Client.prototype);
  await Protocol.connect.call(client, transport);
  try {
    const result = await client.request(
      { method: 'initialize', params: { protocolVersion: version, capabilities: {}, clientInfo: CLIENT_INFO } },
      InitializeResultSchema,
      { timeout }
    );
    if (result.protocolVersion !== version) {
      throw new Error(`server answered protocolVersion ${JSON.stringify(result.protocolVersion)}, asked for ${version}`);
    }
    client._serverCapabilities = result.capabilities;
    client._serverVersion = result.serverInfo;
    client._instructions = result.instructions;
    transport.setProtocolVersion(result.protocolVersion);
    await client.notification({ method: 'notifications/initialized' });
  } catch (e) {
    void client.close();
    throw e;
  }
}

async function runStep(step, timeout) {
  const opts = { timeout };
  const p = step.params;
  switch (step.op) {
    case 'list_tools':
      return client.listTools(p, opts);
    case 'call_tool': {
      const params = { name: step.name, arguments: step.arguments ?? {} };
      if (!step.progress) return client.callTool(params, undefined, opts);
      const seen = [];
      const result = await client.callTool(params, undefined, { ...opts, onprogress: pr => seen.push(pr) });
      return { ...result, _progress: seen };
    }
    case 'list_prompts':
      return client.listPrompts(p, opts);
    case 'get_prompt':
      return client.getPrompt({ name: step.name, arguments: step.arguments ?? {} }, opts);
    case 'list_resources':
      return client.listResources(p, opts);
    case 'list_resource_templates':
      return client.listResourceTemplates(p, opts);
    case 'read_resource':
      return client.readResource({ uri: step.uri }, opts);
    case 'subscribe_resource':
      return client.subscribeResource({ uri: step.uri }, opts);
    case 'complete': {
      const params = { ref: step.ref, argument: step.argument };
      if (step.context) params.context = step.context;
      return client.complete(params, opts);
    }
    case 'set_logging_level':
      return client.setLoggingLevel(step.level, opts);
    case 'ping':
      return client.ping(opts);
    case 'request':
      return client.request({ method: step.method, params: step.params }, ResultSchema, opts);
    case 'notify':
      await client.notification({ method: step.method, params: step.params });
      return {};
    case 'sleep':
      await new Promise(r => setTimeout(r, step.ms ?? 0));
      return {};
    case 'terminate_session':
      await transport.terminateSession();
      return {};
    default:
      throw new Error(`unknown op ${JSON.stringify(step.op)}`);
  }
}

// Lets a 202 / a GET stream opening land in the line of the step that caused it.
const settle = () => new Promise(r => setTimeout(r, 100));

async function main() {
  const timeout = args.timeout * 1000;
  try {
    await connect(args.protocolVersion, timeout);
    await settle();
  } catch (e) {
    if (args.debug) console.error(e);
    emit(failure('connect', e));
    return 2;
  }
  emit({
    op: 'connect',
    ok: true,
    protocol_version: transport.protocolVersion,
    server_info: client.getServerVersion(),
    server_capabilities: client.getServerCapabilities(),
    instructions: client.getInstructions(),
    session_id: transport.sessionId,
    http: takeHttp()
  });
  for (const [i, step] of steps.entries()) {
    stepIndex = i;
    sentIds.clear();
    const op = String(step.op);
    try {
      const result = await runStep(step, step.timeout_ms ?? timeout);
      emit({ op, ok: true, result, http: takeHttp() });
    } catch (e) {
      if (args.debug) console.error(e);
      emit(failure(op, e));
    }
  }
  return 0;
}

const code = await main();
try {
  await client.close();
} catch {
  // closing a half-open transport may throw; the script's outcome is already printed
}
process.exit(code);
