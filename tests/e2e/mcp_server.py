#!/usr/bin/env python3
"""A real MCP server (official Python SDK, `mcp` 2.3.0) for Portcullis end-to-end tests.

Serves streamable HTTP at http://127.0.0.1:PORT/mcp. One endpoint speaks every
protocol revision the SDK knows: the handshake-era ones (2024-11-05 .. 2025-11-25,
`initialize` + optional `Mcp-Session-Id`) and the stateless 2026-07-28 one (the SDK
routes a request whose `MCP-Protocol-Version` header is not a handshake-era version to
its single-exchange handler, see mcp/server/streamable_http_manager.py).

When listening it prints exactly one line `READY <port>` to stdout (flushed).

Usage:
    mcp_server.py [--port N] [--json-response] [--stateless] [--record FILE]
                  [--fixed-time ISO] [--root DIR] [--param-headers]
                  [--allow-any-host] [--verify-upstream-jwk FILE --expect-aud AUD]
                  [--policy-tools] [--slow-tool]

--record FILE appends one JSON line per HTTP request the server received:
    {"seq", "time", "method", "path", "query", "headers": {lowercased: value},
     "body": <request body text>, "status": <response status>,
     "response_headers": {...}, "response_body": <text, truncated>}
A line is written when the response finishes (or the connection goes away), so
a long-lived GET SSE stream is recorded when it closes. Repeated request
headers are joined with ", ".

--verify-upstream-jwk FILE --expect-aud AUD make the server check, on every HTTP
request, that `Authorization: Bearer` carries a token minted by Portcullis: an EdDSA
JWT valid under the public JWK in FILE, `aud` == AUD, `sub` and `jti` present, and a
life (`exp - iat`) of at most an hour. Anything else is answered 401 by the server
itself (a JSON-RPC error naming the reason), so a test fails loudly. With --record,
each line then also has
    "auth": {"valid": bool, "sha256": <hex of the raw token, or null>,
             "claims": {...} (decoded, when the signature verified), "error": <why not>}
    "identity_headers": {"x-mcp-subject": ..., "x-mcp-agent": ..., "x-mcp-tenant": ...}
(the x-mcp-* audit headers that arrived; absent ones are left out).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import socket
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import anyio
import uvicorn
from pydantic import Field

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.transport_security import TransportSecuritySettings

RESPONSE_BODY_LIMIT = 65536
MAX_UPSTREAM_TOKEN_LIFE = 3600
IDENTITY_HEADERS = ("x-mcp-subject", "x-mcp-agent", "x-mcp-tenant")


class RecordingMiddleware:
    """ASGI middleware that appends one JSON line per HTTP request to a file."""

    def __init__(self, app: Any, path: str) -> None:
        self.app = app
        self.path = path
        self.seq = 0

    def _write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, ensure_ascii=False, sort_keys=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.seq += 1
        headers: dict[str, str] = {}
        for k, v in scope.get("headers", []):
            name = k.decode("latin-1").lower()
            value = v.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        record: dict[str, Any] = {
            "seq": self.seq,
            "time": time.time(),
            "method": scope.get("method"),
            "path": scope.get("path"),
            "query": scope.get("query_string", b"").decode("latin-1"),
            "headers": headers,
        }

        # Buffer the whole request body, then replay it to the app.
        chunks: list[bytes] = []
        pending_disconnect: dict[str, Any] | None = None
        while True:
            message = await receive()
            if message["type"] == "http.request":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    break
            else:  # http.disconnect before the body finished
                pending_disconnect = message
                break
        body = b"".join(chunks)
        record["body"] = body.decode("utf-8", errors="replace")
        replayed = False

        async def replay_receive() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            if pending_disconnect is not None:
                return pending_disconnect
            return await receive()

        response_chunks: list[bytes] = []
        response_size = 0
        written = False

        def finish() -> None:
            nonlocal written
            if written:
                return
            written = True
            record["response_body"] = b"".join(response_chunks).decode("utf-8", errors="replace")
            if response_size > RESPONSE_BODY_LIMIT:
                record["response_body_truncated"] = True
            self._write(record)

        async def recording_send(message: dict[str, Any]) -> None:
            nonlocal response_size
            if message["type"] == "http.response.start":
                record["status"] = message["status"]
                rh: dict[str, str] = {}
                for k, v in message.get("headers", []):
                    name = k.decode("latin-1").lower()
                    value = v.decode("latin-1")
                    rh[name] = f"{rh[name]}, {value}" if name in rh else value
                record["response_headers"] = rh
            elif message["type"] == "http.response.body":
                chunk = message.get("body", b"")
                if response_size < RESPONSE_BODY_LIMIT:
                    response_chunks.append(chunk[: RESPONSE_BODY_LIMIT - response_size])
                response_size += len(chunk)
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                finish()

        try:
            # Inner middleware (UpstreamAuthCheck) adds its findings to the record.
            await self.app({**scope, "e2e.record": record}, replay_receive, recording_send)
        finally:
            finish()


class UpstreamAuthCheck:
    """ASGI middleware: every request must carry a valid Portcullis-minted token.

    This is the upstream's half of token isolation: it sees only tokens minted for it,
    and can verify them offline with the proxy's public key. A request without one is
    refused here with 401, never handed to the MCP app.
    """

    def __init__(self, app: Any, jwk_path: str, audience: str) -> None:
        import jwt  # PyJWT, only needed with --verify-upstream-jwk

        self.jwt = jwt
        self.app = app
        self.audience = audience
        with open(jwk_path, encoding="utf-8") as f:
            self.key = jwt.PyJWK(json.load(f)).key

    def check(self, values: list[str]) -> dict[str, Any]:
        if len(values) != 1:
            return {"valid": False, "sha256": None, "error": f"{len(values)} Authorization headers"}
        scheme, _, token = values[0].partition(" ")
        if scheme.lower() != "bearer" or not token:
            return {"valid": False, "sha256": None, "error": "not a Bearer credential"}
        token = token.strip()
        out: dict[str, Any] = {"valid": False, "sha256": hashlib.sha256(token.encode("latin-1")).hexdigest()}
        try:
            header = self.jwt.get_unverified_header(token)
            claims = self.jwt.decode(
                token,
                self.key,
                algorithms=["EdDSA"],
                audience=self.audience,
                leeway=5,
                options={"require": ["exp", "iat", "sub", "jti"]},
            )
        except self.jwt.PyJWTError as exc:
            out["error"] = f"{type(exc).__name__}: {exc}"
            return out
        out["claims"] = claims
        out["header"] = header
        life = claims["exp"] - claims["iat"]
        if life > MAX_UPSTREAM_TOKEN_LIFE:
            out["error"] = f"token lives {life} s, more than {MAX_UPSTREAM_TOKEN_LIFE}"
        elif not claims["sub"] or not claims["jti"]:
            out["error"] = "empty sub or jti"
        else:
            out["valid"] = True
        return out

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        values = [v.decode("latin-1") for k, v in scope.get("headers", []) if k.lower() == b"authorization"]
        result = self.check(values)
        record = scope.get("e2e.record")
        if record is not None:
            record["auth"] = result
            record["identity_headers"] = {
                k.decode("latin-1").lower(): v.decode("latin-1")
                for k, v in scope.get("headers", [])
                if k.decode("latin-1").lower() in IDENTITY_HEADERS
            }
        if result["valid"]:
            await self.app(scope, receive, send)
            return
        body = json.dumps(
            {
                "jsonrpc": "2.0",
                "id": None,
                "error": {"code": -32001, "message": f"upstream refused the token: {result['error']}"},
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b'Bearer error="invalid_token"'),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body, "more_body": False})


def build_server(args: argparse.Namespace) -> MCPServer:
    mcp = MCPServer(name="portcullis-e2e-upstream", version="1.0.0", log_level="WARNING")
    root = Path(args.root).resolve() if args.root else None

    @mcp.tool(name="echo", description="Echo the given text back.")
    def echo(text: str) -> str:
        return text

    @mcp.tool(name="get-weather", description="Deterministic fake weather for a city.")
    def get_weather(city: str) -> str:
        conditions = ["sunny", "cloudy", "rainy", "windy", "snowy"]
        h = int(hashlib.sha256(city.strip().lower().encode()).hexdigest(), 16)
        return f"Weather in {city}: {conditions[h % len(conditions)]}, {h % 35}C"

    @mcp.tool(name="get-time", description="Current time as an ISO-8601 string.")
    def get_time() -> str:
        if args.fixed_time:
            return args.fixed_time
        return _dt.datetime.now(_dt.timezone.utc).isoformat()

    @mcp.tool(name="delete-file", description="Pretend to delete a file (a tool a policy bundle denies).")
    def delete_file(path: str) -> str:
        return f"deleted {path}"

    @mcp.tool(name="add", description="Add two integers.")
    def add(a: int, b: int) -> int:
        return a + b

    @mcp.tool(name="countdown", description="Report n progress notifications, then return 'liftoff'.")
    async def countdown(n: int, ctx: Context) -> str:
        # With a progressToken in the request this makes the response a real SSE stream
        # (on 2026-07-28 the SDK only commits to SSE once a notification is emitted).
        for i in range(n):
            await ctx.report_progress(i + 1, n, f"{n - i}")
        return "liftoff"

    def read_file(path: str) -> str:
        if root is None:
            raise ValueError("server started without --root")
        target = (root / path).resolve()
        if target != root and root not in target.parents:
            raise ValueError(f"path escapes root: {path}")
        return target.read_text(encoding="utf-8")

    if args.param_headers:
        # 2026-07-28: the client mirrors this argument into an `Mcp-Param-Path` header
        # (once it has seen the tool in tools/list) and the server checks they agree.
        read_file.__annotations__ = {
            "path": Annotated[str, Field(json_schema_extra={"x-mcp-header": "Path"})],
            "return": str,
        }
    else:
        read_file.__annotations__ = {"path": str, "return": str}
    mcp.tool(name="read-file", description="Read a text file under the server's --root directory.")(read_file)

    if args.policy_tools:
        # Deliberately naive, as many real servers are: it percent-decodes and
        # normalises the path itself, so a traversal Portcullis let through
        # would reach /data/private. The policy e2e test proves none does.
        files = {
            "/data/public/report.txt": "quarterly report: all good\n",
            "/data/private/salaries.txt": "SECRET salaries\n",
        }

        @mcp.tool(name="fetch-file", description="Read a file from the document store by absolute path.")
        def fetch_file(path: str) -> str:
            import posixpath
            import urllib.parse

            normal = posixpath.normpath(urllib.parse.unquote(path).replace("\\", "/"))
            if normal not in files:
                raise ValueError(f"no such file: {normal}")
            return files[normal]

        @mcp.tool(name="pay", description="Pay an amount to an account.")
        def pay(amount: float, to: str) -> str:
            return f"paid {amount:.2f} to {to}"

    if args.slow_tool:
        # A call that stays in flight long enough for another to overlap it
        # (the fleet concurrency e2e test).
        @mcp.tool(name="slow", description="Wait the given number of seconds, then answer 'done'.")
        async def slow(seconds: float) -> str:
            await anyio.sleep(min(max(seconds, 0.0), 30.0))
            return "done"

    @mcp.resource("file:///readme", name="readme", description="The upstream's README.", mime_type="text/plain")
    def readme() -> str:
        return "Portcullis e2e upstream README\n"

    @mcp.prompt(name="greet", description="Greet someone by name.")
    def greet(name: str) -> str:
        return f"Please greet {name} warmly."

    return mcp


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1; keep it on loopback)")
    p.add_argument("--port", type=int, default=0, help="0 = pick a free port")
    p.add_argument("--json-response", action="store_true", help="answer POSTs with application/json, not SSE")
    p.add_argument(
        "--stateless",
        action="store_true",
        help="handshake-era stateless mode (no Mcp-Session-Id, no GET stream). "
        "2026-07-28 requests are stateless either way.",
    )
    p.add_argument("--record", metavar="FILE", help="append one JSON line per received HTTP request")
    p.add_argument("--fixed-time", metavar="ISO", help="value the get-time tool returns (default: now)")
    p.add_argument("--root", metavar="DIR", help="directory read-file serves from")
    p.add_argument(
        "--policy-tools",
        action="store_true",
        help="also serve fetch-file (a naive path-based reader) and pay (the policy e2e test's tools)",
    )
    p.add_argument(
        "--slow-tool",
        action="store_true",
        help="also serve slow (waits `seconds`, at most 30, then answers): calls that overlap",
    )
    p.add_argument(
        "--param-headers",
        action="store_true",
        help="annotate read-file's `path` with x-mcp-header: Path (2026-07-28 Mcp-Param-Path header)",
    )
    p.add_argument(
        "--allow-any-host",
        action="store_true",
        help="disable the SDK's Host/Origin (DNS-rebinding) check, e.g. when a proxy rewrites Host",
    )
    p.add_argument(
        "--verify-upstream-jwk",
        metavar="FILE",
        help="public JWK (EdDSA): refuse (401) every request without a valid token minted under it",
    )
    p.add_argument("--expect-aud", metavar="AUD", help="the aud minted tokens must carry (with --verify-upstream-jwk)")
    args = p.parse_args()
    if bool(args.verify_upstream_jwk) != bool(args.expect_aud):
        p.error("--verify-upstream-jwk and --expect-aud go together")

    mcp = build_server(args)
    security = TransportSecuritySettings(enable_dns_rebinding_protection=False) if args.allow_any_host else None
    app: Any = mcp.streamable_http_app(
        streamable_http_path="/mcp",
        json_response=args.json_response,
        stateless_http=args.stateless,
        transport_security=security,
        host=args.host,
    )
    if args.verify_upstream_jwk:
        app = UpstreamAuthCheck(app, args.verify_upstream_jwk, args.expect_aud)
    if args.record:
        Path(args.record).parent.mkdir(parents=True, exist_ok=True)
        app = RecordingMiddleware(app, args.record)

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    port = sock.getsockname()[1]

    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)

    async def serve() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            while not server.started:
                if server.should_exit:
                    return
                await anyio.sleep(0.01)
            sys.stdout.write(f"READY {port}\n")
            sys.stdout.flush()

    try:
        anyio.run(serve)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
