#!/usr/bin/env python3
"""A scripted MCP client (official Python SDK, `mcp` 2.3.0) for Portcullis end-to-end tests.

Usage:
    mcp_client.py --url http://127.0.0.1:PORT/mcp --protocol-version 2025-11-25 \
        [--header K=V ...] [--no-discover] [--timeout S] --script FILE|-
        [--auth-flow --idp-key PEM --idp-kid KID --idp-alg RS256|ES256 --idp-issuer ISS
         --subject S --agent A [--tenant T] --scope "mcp tools:echo ..." [--token-lifetime N]]

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

--auth-flow walks the MCP authorization discovery before the session, printing one
line per step (before "connect"):
    {"op": "auth_challenge", "ok", "status", "www_authenticate", "resource_metadata", "body"}
        a POST initialize without a token; ok when it got 401 with a resource_metadata URL
    {"op": "auth_metadata", "ok", "status", "url", "document"}
        GET of that URL (loopback only); ok when 200 and `resource` is --url and
        `authorization_servers` names --idp-issuer
    {"op": "auth_token", "ok": true, "sha256", "jti", "claims", "header"}
        the token this client minted as its own IdP (PyJWT, see mint_token.py), aud = the
        document's `resource`; only its SHA-256 is printed, never the token
Then the usual session runs with `Authorization: Bearer <token>` on every request. A
failed discovery step exits 2. Entries in "http" for a 401/403 carry "www_authenticate".

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
import re
import sys
import traceback
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

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
        if response.status_code in (401, 403):
            entry["www_authenticate"] = response.headers.get("www-authenticate")
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


LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


def _resource_metadata(challenge: str) -> str | None:
    m = re.search(r'resource_metadata="((?:[^"\\]|\\.)*)"', challenge)
    return re.sub(r"\\(.)", r"\1", m.group(1)) if m else None


def _same_resource(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


async def auth_flow(args: argparse.Namespace) -> str | None:
    """RFC 9728 discovery, then a token from our stand-in IdP. Returns the token, or None."""
    import mint_token  # next to this file; PyJWT

    async with httpx2.AsyncClient(timeout=httpx2.Timeout(args.timeout), transport=SafeTransport()) as http:
        probe = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": LATEST_HANDSHAKE_VERSION,
                "capabilities": {},
                "clientInfo": CLIENT_INFO.model_dump(mode="json", by_alias=True, exclude_none=True),
            },
        }
        r = await http.post(
            args.url, json=probe, headers={"accept": "application/json, text/event-stream"}
        )
        challenge = r.headers.get("www-authenticate", "")
        metadata_url = _resource_metadata(challenge)
        try:
            body: Any = r.json()
        except ValueError:
            body = r.text[:2000]
        ok = r.status_code == 401 and metadata_url is not None
        emit(
            {
                "op": "auth_challenge",
                "ok": ok,
                "status": r.status_code,
                "www_authenticate": challenge,
                "resource_metadata": metadata_url,
                "body": body,
            }
        )
        if not ok or metadata_url is None:
            return None

        # Never follow a metadata URL off the machine: the tests send loopback traffic only.
        host = urlsplit(metadata_url).hostname
        if host not in LOOPBACK_HOSTS:
            emit({"op": "auth_metadata", "ok": False, "url": metadata_url, "error": "not a loopback URL"})
            return None
        r = await http.get(metadata_url, headers={"accept": "application/json"})
        try:
            document: Any = r.json()
        except ValueError:
            document = None
        problems = []
        if r.status_code != 200 or not isinstance(document, dict):
            problems.append(f"HTTP {r.status_code}, not a JSON object")
        else:
            # RFC 9728 §3.3: the resource must be the one the client asked for.
            if not isinstance(document.get("resource"), str) or not _same_resource(document["resource"], args.url):
                problems.append(f"resource {document.get('resource')!r} is not {args.url!r}")
            if args.idp_issuer not in (document.get("authorization_servers") or []):
                problems.append(f"authorization_servers lacks {args.idp_issuer!r}")
        line: dict[str, Any] = {
            "op": "auth_metadata",
            "ok": not problems,
            "status": r.status_code,
            "url": metadata_url,
            "document": document if document is not None else r.text[:2000],
        }
        if problems:
            line["error"] = "; ".join(problems)
        emit(line)
        if problems:
            return None

    claims = mint_token.claims_for(
        issuer=args.idp_issuer,
        aud=document["resource"],
        subject=args.subject,
        agent=args.agent,
        tenant=args.tenant,
        scope=args.scope,
        lifetime=args.token_lifetime,
    )
    token = mint_token.mint(claims, key_pem=Path(args.idp_key).read_bytes(), alg=args.idp_alg, kid=args.idp_kid)
    emit(
        {
            "op": "auth_token",
            "ok": True,
            "sha256": mint_token.sha256_hex(token),
            "jti": claims["jti"],
            "claims": claims,
            "header": {"alg": args.idp_alg, "kid": args.idp_kid, "typ": "JWT"},
        }
    )
    return token


async def amain(args: argparse.Namespace, steps: list[dict[str, Any]]) -> int:
    headers: dict[str, str] = {}
    for h in args.header:
        if "=" not in h:
            raise SystemExit(f"--header wants K=V, got {h!r}")
        k, v = h.split("=", 1)
        headers[k.strip()] = v
    if args.auth_flow:
        token = await auth_flow(args)
        if token is None:
            return 2
        headers["Authorization"] = f"Bearer {token}"
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
    auth = p.add_argument_group("authorization discovery (--auth-flow)")
    auth.add_argument("--auth-flow", action="store_true", help="401 -> RFC 9728 metadata -> own token, then the session")
    auth.add_argument("--idp-key", metavar="PEM", help="private key the stand-in IdP signs with")
    auth.add_argument("--idp-kid", metavar="KID")
    auth.add_argument("--idp-alg", default="RS256", choices=["RS256", "ES256"])
    auth.add_argument("--idp-issuer", metavar="ISS")
    auth.add_argument("--subject", metavar="S")
    auth.add_argument("--agent", metavar="A")
    auth.add_argument("--tenant", metavar="T")
    auth.add_argument("--scope", metavar="SCOPES", help='space-separated, e.g. "mcp tools:echo"')
    auth.add_argument("--token-lifetime", type=int, default=300, metavar="N", help="seconds (default 300)")
    args = p.parse_args()
    if args.auth_flow:
        missing = [f for f in ("idp_key", "idp_kid", "idp_issuer", "subject", "agent", "scope") if not getattr(args, f)]
        if missing:
            p.error("--auth-flow needs " + ", ".join("--" + m.replace("_", "-") for m in missing))

    text = sys.stdin.read() if args.script == "-" else open(args.script, encoding="utf-8").read()
    steps = json.loads(text)
    if not isinstance(steps, list):
        raise SystemExit("--script must be a JSON list of steps")
    sys.exit(anyio.run(amain, args, steps))


if __name__ == "__main__":
    main()
