#!/usr/bin/env node
// Runs the reference "everything" MCP server (@modelcontextprotocol/server-everything
// 2026.8.31, on the TypeScript SDK 1.32.2) in streamable HTTP mode on loopback only, and
// prints `READY <port>` (one line, flushed) once it listens.
//
// Usage:  node everything_server.mjs [--port N]        (default 0: a free port)
//
// Why a wrapper: the package's dist/transports/streamableHttp.js calls express's
// `app.listen(process.env.PORT || 3001, cb)`, with no host, so Node binds every interface
// (`::`, dual stack), and it logs the port it was *given* ("listening on port 0"), not the
// one it got. It has no option for either. This wrapper patches net.Server.prototype.listen
// before importing it, so that a listen(port[, cb]) call without a host binds 127.0.0.1,
// and prints the port actually bound. Everything else is the package's own code, unchanged:
// the server answers POST/GET/DELETE on /mcp (any other path: 404 from express), one MCP
// session per initialize (stateful, Mcp-Session-Id, an in-memory event store for
// resumability), and logs every request to stdout ("Received MCP POST request").
//
// The package is loaded from $PORTCULLIS_E2E_NODE_MODULES (what `cargo xtask node` prints),
// else from tests/e2e/node_modules.

import { existsSync } from 'node:fs';
import net from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const nodeModules = process.env.PORTCULLIS_E2E_NODE_MODULES || join(here, 'node_modules');
const entry = join(nodeModules, '@modelcontextprotocol', 'server-everything', 'dist', 'transports', 'streamableHttp.js');
if (!existsSync(entry)) {
  process.stderr.write(`everything_server.mjs: no ${entry}: run \`cargo xtask node\` (or \`npm ci\` in tests/e2e)\n`);
  process.exit(1);
}

let port = '0';
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === '--port' && i + 1 < argv.length) port = argv[++i];
  else {
    process.stderr.write(`everything_server.mjs: unknown argument ${argv[i]}\n`);
    process.exit(1);
  }
}
process.env.PORT = port;

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  // listen(port[, backlog][, cb]) with a number or numeric string: add the host.
  if ((typeof args[0] === 'number' || /^\d+$/.test(String(args[0]))) && typeof args[1] !== 'string') {
    args = [Number(args[0]), '127.0.0.1', ...args.slice(1)];
    this.once('listening', () => {
      process.stdout.write(`READY ${this.address().port}\n`);
    });
  }
  return listen.apply(this, args);
};

await import(pathToFileURL(entry).href);
