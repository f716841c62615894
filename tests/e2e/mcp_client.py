#!/usr/bin/env python3
"""A scripted MCP client (official Python SDK, `mcp` 2.3.0) for Portcullis end-to-end tests.

Usage:
    mcp_client.py --url http://127.0.0.1:PORT/mcp --protocol-version 2025-11-25 \
        [--header K=V ...] [--no-discover] [--timeout S] --script FILE|-

--script is a JSON list of steps, each one of
    {"op": "list_tools"}
    {"op": "call_tool", "name": "add", "arguments": {"a": 1, "b": 2}}
    {"op": "call_tool", "name": "countdown", "arguments": {"n": 3}, "progress": true}
        (progress: send a progressToken; the notifications received are added to the
         result as "_progress": [{"progress", "total", "message"}, ...])
    {"op": "list_prompts"}
    {"op": "get_prompt", "name": "greet", "arguments": {"name": "Ada"}}
    {"op": "list_resources"}
    {"op": "read_resource", "uri": "file:///readme"}
    {"op": "ping"}
    {"op": "discover"}            (2026-07-28 only: send server/discover again)

Output (stdout, one JSON line each):
    first   {"op": "connect", "ok": true, "protocol_version": ..., "server_info": ..., "http": [...]}
    then per step
        {"op", "ok": true,  "result": <SDK result model_dump(mode="json", by_alias=True, exclude_none=True)>, "http": [...]}
        {"op", "ok": false, "error": {"code", "message", "data"}, "http": [...]}        JSON-RPC error from the server
        {"op", "ok": false, "transport_error": "...", "http": [...]}                    anything else
    "http" lists the POSTs made for that step: [{"status": 200, "content_type": "..."}].
    A connection failure (refused, reset) is reported as transport_error "ConnectError: ..."
    (internally a synthetic HTTP 599, flagged "transport_exception" in "http").
    A non-2xx HTTP answer whose body is not a JSON-RPC error (e.g. a proxy's plain 403) is
    reported as transport_error "HTTP <status>: <body>" - the SDK itself would turn it into a
    synthetic JSON-RPC error (-32601 for 404 before a session exists, else -32603/-32600).

Exit status: 0 when the script ran to the end (whatever the steps' outcomes), 2 when the
connection (initialize / server/discover) failed, 1 on bad usage.

How the protocol version is chosen (SDK 2.3.0):
  * 2026-07-28 (the only "modern" revision): the SDK's own path. By default the client sends
    `server/discover` (ClientSession.discover(), what `Client(mode="auto")` does first) and
    adopts the result; with --no-discover it adopts a synthesized DiscoverResult with no
    wire traffic, exactly like `Client(mode="2026-07-28")`. Every request then carries the
    version in `params._meta` and in the MCP-Protocol-Version header, plus Mcp-Method/Mcp-Name.
  * 2025-11-25 (LATEST_HANDSHAKE_VERSION): the SDK's own `ClientSession.initialize()`.
  * 2024-11-05, 2025-03-26, 2025-06-18: the SDK offers no knob for this -
    `ClientSession.initialize()` always offers LATEST_HANDSHAKE_VERSION. So this client
    sends the same `initialize` request itself through the public `send_request` with the
    requested protocolVersion, checks the server agreed, then calls `adopt()` and sends
    `notifications/initialized` exactly as `initialize()` does. From then on the SDK stamps
    `MCP-Protocol-Version: <negotiated>` on every request as usual.
  * "auto": the SDK's `Client(mode="auto")` policy (discover, fall back to initialize).
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from typing import Any

import anyio
import httpx2
import mcp_types as types
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, LATEST_HANDSHAKE_VERSION, MODERN_PROTOCOL_VERSIONS

from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

CLIENT_INFO = types.Implementation(name="portcullis-e2e-client", version="1.0.0")


def dump(model: Any) -> Any:
    if hasattr(model, "model_dump"):
        return model.model_dump(mode="json", by_alias=True, exclude_none=True)
    return model


def emit(line: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(line, ensure_ascii=False, sort_keys=True) + "\n")
    sys.stdout.flush()


TRANSPORT_ERROR_STATUS = 599  # synthetic status for "no HTTP response at all"


class SafeTransport(httpx2.AsyncBaseTransport):
    """Turns a connection-level failure into a synthetic HTTP 599 response.

    Without this, an httpx2.ConnectError/ReadError in the SDK's per-request POST task
    escapes the transport's task group and kills the whole client; this way it surfaces as a
    failed step ("transport_error") and the script goes on.
    """

    def __init__(self) -> None:
        self.inner = httpx2.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        try:
            return await self.inner.handle_async_request(request)
        except httpx2.TransportError as exc:
            return httpx2.Response(
                TRANSPORT_ERROR_STATUS,
                headers={"content-type": "text/plain", "x-e2e-transport-error": "1"},
                text=f"{type(exc).__name__}: {exc}",
                request=request,
            )

    async def aclose(self) -> None:
        await self.inner.aclose()


class HttpLog:
    """httpx2 response hook: remembers status/content-type (and error bodies) of POSTs."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    async def on_response(self, response: httpx2.Response) -> None:
        if response.request.method != "POST":
            return
        entry: dict[str, Any] = {
            "status": response.status_code,
            "content_type": response.headers.get("content-type", ""),
        }
        if response.headers.get("x-e2e-transport-error"):
            entry["transport_exception"] = True
        if response.status_code >= 400:
            try:
                body = await response.aread()
                entry["body"] = body.decode("utf-8", errors="replace")[:2000]
            except Exception as exc:  # noqa: BLE001 - best effort only
                entry["body"] = f"<unreadable: {exc}>"
        self.entries.append(entry)

    def take(self) -> list[dict[str, Any]]:
        out, self.entries = self.entries, []
        return out


def _is_jsonrpc_error_body(entry: dict[str, Any]) -> bool:
    if not entry.get("content_type", "").lower().startswith("application/json"):
        return False
    try:
        obj = json.loads(entry.get("body", ""))
    except ValueError:
        return False
    return isinstance(obj, dict) and isinstance(obj.get("error"), dict) and "code" in obj["error"]


def failure(op: str, exc: BaseException, http: list[dict[str, Any]]) -> dict[str, Any]:
    """Classify a failed step: JSON-RPC error from the server vs everything else."""
    bad_http = [e for e in http if e["status"] >= 400 and not _is_jsonrpc_error_body(e)]
    if bad_http:
        e = bad_http[-1]
        msg = e.get("body", "") if e.get("transport_exception") else f"HTTP {e['status']}: {e.get('body', '')}"
        return {"op": op, "ok": False, "transport_error": msg, "http": http}
    if isinstance(exc, MCPError):
        err: dict[str, Any] = {"code": exc.code, "message": exc.message}
        if exc.data is not None:
            err["data"] = exc.data
        return {"op": op, "ok": False, "error": err, "http": http}
    return {"op": op, "ok": False, "transport_error": f"{type(exc).__name__}: {exc}", "http": http}


async def connect(session: ClientSession, version: str, discover: bool) -> None:
    if version in MODERN_PROTOCOL_VERSIONS:
        if discover:
            raw = await session.send_discover(version)
            session.adopt(types.DiscoverResult.model_validate(raw))
        else:
            session.adopt(
                types.DiscoverResult(
                    supported_versions=[version],
                    capabilities=types.ServerCapabilities(),
                    result_type="complete",
                    ttl_ms=0,
                    cache_scope="public",
                )
            )
    elif version == LATEST_HANDSHAKE_VERSION:
        await session.initialize()
    elif version in HANDSHAKE_PROTOCOL_VERSIONS:
        # The SDK cannot be told to offer an older revision; do what initialize() does.
        result = await session.send_request(
            types.InitializeRequest(
                params=types.InitializeRequestParams(
                    protocol_version=version,
                    capabilities=types.ClientCapabilities(),
                    client_info=CLIENT_INFO,
                )
            ),
            types.InitializeResult,
        )
        if result.protocol_version != version:
            raise RuntimeError(f"server answered protocolVersion {result.protocol_version!r}, asked for {version!r}")
        session.adopt(result)
        await session.send_notification(types.InitializedNotification())
    elif version == "auto":
        from mcp.client._probe import negotiate_auto  # the SDK's Client(mode="auto") policy

        await negotiate_auto(session)
    else:
        raise SystemExit(f"unknown --protocol-version {version!r}")
    if version != "auto" and session.protocol_version != version:
        raise RuntimeError(f"negotiated {session.protocol_version!r}, asked for {version!r}")


async def run_step(session: ClientSession, step: dict[str, Any], version: str) -> Any:
    op = step.get("op")
    if op == "list_tools":
        return await session.list_tools()
    if op == "call_tool":
        if step.get("progress"):
            # Pass a progress callback: the SDK then sends params._meta.progressToken and the
            # server's notifications/progress come back on the POST's SSE stream.
            seen: list[dict[str, Any]] = []

            async def on_progress(progress: float, total: float | None, message: str | None) -> None:
                seen.append({"progress": progress, "total": total, "message": message})

            result = await session.call_tool(step["name"], step.get("arguments") or {}, progress_callback=on_progress)
            out = dump(result)
            if isinstance(out, dict):
                out = {**out, "_progress": seen}
            return out
        return await session.call_tool(step["name"], step.get("arguments") or {})
    if op == "list_prompts":
        return await session.list_prompts()
    if op == "get_prompt":
        return await session.get_prompt(step["name"], step.get("arguments") or {})
    if op == "list_resources":
        return await session.list_resources()
    if op == "read_resource":
        return await session.read_resource(step["uri"])
    if op == "ping":
        return await session.send_ping()
    if op == "discover":
        return await session.send_discover(session.protocol_version or version)
    raise ValueError(f"unknown op {op!r}")


async def amain(args: argparse.Namespace, steps: list[dict[str, Any]]) -> int:
    headers: dict[str, str] = {}
    for h in args.header:
        if "=" not in h:
            raise SystemExit(f"--header wants K=V, got {h!r}")
        k, v = h.split("=", 1)
        headers[k.strip()] = v
    log = HttpLog()
    http_client = httpx2.AsyncClient(
        headers=headers,
        timeout=httpx2.Timeout(args.timeout, read=max(args.timeout, 60.0)),
        event_hooks={"response": [log.on_response]},
        transport=SafeTransport(),
    )
    async with http_client:
        async with streamable_http_client(args.url, http_client=http_client) as (read_stream, write_stream):
            async with ClientSession(
                read_stream, write_stream, read_timeout_seconds=args.timeout, client_info=CLIENT_INFO
            ) as session:
                try:
                    with anyio.fail_after(args.timeout + 5):
                        await connect(session, args.protocol_version, not args.no_discover)
                    # let the notifications/initialized POST (answered 202) land in this line's "http"
                    await anyio.sleep(0.2)
                except Exception as exc:  # noqa: BLE001
                    line = failure("connect", exc, log.take())
                    if args.debug:
                        traceback.print_exc()
                    emit(line)
                    return 2
                emit(
                    {
                        "op": "connect",
                        "ok": True,
                        "protocol_version": session.protocol_version,
                        "server_info": dump(session.server_info),
                        "http": log.take(),
                    }
                )
                for step in steps:
                    op = str(step.get("op"))
                    try:
                        with anyio.fail_after(args.timeout + 5):
                            result = await run_step(session, step, args.protocol_version)
                        emit({"op": op, "ok": True, "result": dump(result), "http": log.take()})
                    except Exception as exc:  # noqa: BLE001 - every failure becomes an output line
                        if args.debug:
                            traceback.print_exc()
                        emit(failure(op, exc, log.take()))
    return 0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True)
    p.add_argument(
        "--protocol-version",
        default=LATEST_HANDSHAKE_VERSION,
        help=f"one of {list(HANDSHAKE_PROTOCOL_VERSIONS) + list(MODERN_PROTOCOL_VERSIONS)} or 'auto'",
    )
    p.add_argument("--header", action="append", default=[], metavar="K=V", help="extra HTTP header (repeatable)")
    p.add_argument("--script", required=True, metavar="FILE|-")
    p.add_argument("--no-discover", action="store_true", help="2026-07-28: skip server/discover, adopt directly")
    p.add_argument("--timeout", type=float, default=20.0, help="per-request timeout, seconds")
    p.add_argument("--debug", action="store_true", help="print tracebacks to stderr")
    args = p.parse_args()

    text = sys.stdin.read() if args.script == "-" else open(args.script, encoding="utf-8").read()
    steps = json.loads(text)
    if not isinstance(steps, list):
        raise SystemExit("--script must be a JSON list of steps")
    sys.exit(anyio.run(amain, args, steps))


if __name__ == "__main__":
    main()
