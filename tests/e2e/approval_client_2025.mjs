#!/usr/bin/env node
// Human approval for an MCP 2025-11-25 client: the official TypeScript SDK
// (@modelcontextprotocol/sdk 1.32.2, which speaks up to 2025-11-25; its code unchanged)
// declares URL-mode elicitation and calls a risky tool through Portcullis. The filter
// answers the URLElicitationRequiredError (-32042), which the SDK throws as
// UrlElicitationRequiredError with its elicitations. What an application does with it:
// show the URL to the user, wait until they are done, retry the call.
//
// Usage:
//   node approval_client_2025.mjs --url URL --tool NAME --arguments JSON [--again]
//
// The "person" is outside this script: after printing each elicitation it reads one line
// from stdin (the test writes it once a browser decided on the page), then retries.
//
// Output (stdout), one JSON line each:
//   {"op": "connect", "protocol_version"}
//   {"op": "elicitation", "round", "mode", "elicitationId", "url", "message"}
//   {"op": "call", "ok", "result"|"error"}      the call's final outcome
//   {"op": "again", "ok", "result"|"error"}     (--again) the same call once more: a new
//                                                approval is needed (one approval, one call)
//
// The SDK is loaded from $PORTCULLIS_E2E_NODE_MODULES, else tests/e2e/node_modules.

import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const nodeModules = process.env.PORTCULLIS_E2E_NODE_MODULES || join(here, 'node_modules');
const sdkRoot = join(nodeModules, '@modelcontextprotocol', 'sdk');
if (!existsSync(join(sdkRoot, 'package.json'))) {
  process.stderr.write(`approval_client_2025.mjs: no @modelcontextprotocol/sdk under ${nodeModules}\n`);
  process.exit(1);
}
const sdk = rel => import(pathToFileURL(join(sdkRoot, 'dist', 'esm', rel)).href);
const { Client } = await sdk('client/index.js');
const { StreamableHTTPClientTransport } = await sdk('client/streamableHttp.js');
const { McpError, UrlElicitationRequiredError } = await sdk('types.js');

const argv = process.argv.slice(2);
const opt = name => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
};
const url = opt('--url');
const tool = opt('--tool');
const toolArgs = JSON.parse(opt('--arguments') ?? '{}');
if (!url || !tool) {
  process.stderr.write('usage: approval_client_2025.mjs --url URL --tool NAME --arguments JSON [--again]\n');
  process.exit(1);
}

const emit = line => process.stdout.write(`${JSON.stringify(line)}\n`);
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const userIsDone = async () => {
  const next = await lines.next();
  if (next.done) throw new Error('stdin closed before the person was done');
};

const client = new Client(
  { name: 'portcullis-e2e-approval-2025', version: '1.0.0' },
  { capabilities: { elicitation: { form: {}, url: {} } } }
);
await client.connect(new StreamableHTTPClientTransport(new URL(url)));
emit({ op: 'connect', protocol_version: client.transport?.protocolVersion ?? null });

// The application's loop: each URL elicitation is shown, then the call retried.
async function callWithApproval(op, maxRounds = 3) {
  for (let round = 0; ; round++) {
    try {
      const result = await client.callTool({ name: tool, arguments: toolArgs });
      emit({ op, ok: true, result });
      return;
    } catch (e) {
      if (e instanceof UrlElicitationRequiredError && round < maxRounds) {
        for (const el of e.elicitations) {
          emit({ op: 'elicitation', round, mode: el.mode, elicitationId: el.elicitationId, url: el.url, message: el.message });
        }
        await userIsDone();
        continue;
      }
      if (e instanceof McpError) {
        emit({ op, ok: false, error: { code: e.code, message: e.message, data: e.data } });
        return;
      }
      throw e;
    }
  }
}

await callWithApproval('call');
if (argv.includes('--again')) await callWithApproval('again', 0);
await client.close();
process.exit(0);
