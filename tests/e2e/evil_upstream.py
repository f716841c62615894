#!/usr/bin/env python3
"""A deliberately malicious MCP upstream for Portcullis end-to-end tests.

Python standard library only (asyncio streams, no HTTP framework), so it can send any
bytes at all: lying Content-Length, broken chunked framing, duplicate or CR/LF-laden
headers, trailers, half-written SSE events, connections dropped mid-body. It listens on
127.0.0.1 and prints exactly one line `READY <port>` (flushed) once it accepts connections.

Usage:
    evil_upstream.py [--port 0] [--host 127.0.0.1] [--scenario FILE] [--record FILE]

Without --scenario (or with an empty rule list) it is a minimal but valid MCP server
(the "built-in default", below), so both official SDK clients complete their handshake;
a scenario adds rules in front of it to answer chosen requests maliciously.

--record FILE: one JSON line per HTTP request received, written (and flushed) as soon as
the request is complete, *before* it is answered, so "did this reach the upstream?" is
answered by the file alone. A request whose connection closed before it was complete is
recorded too, with "complete": false. Fields:

    seq          1, 2, ... over the whole run
    time         ISO 8601 (UTC)
    conn         connection number (1, 2, ...); conn_seq: request number on that connection
    method, target, version     the request line as sent (target = path + query, raw)
    path, query  target split at the first "?"
    headers      [[name, value], ...] in order, duplicates kept, names not case-folded;
                 bytes decoded as Latin-1, so every byte is one character
    framing      "content-length" | "chunked" | "none" (how the body was delimited)
    body_b64     the body bytes (after de-chunking), base64
    body         the same as text when it is valid UTF-8, else null
    trailers     [[name, value], ...] (chunked requests only)
    json         the body parsed as JSON (lenient: BOM and surrounding whitespace ignored),
                 or null
    rpc          [{"method", "id", "name"}] one per JSON-RPC message in the body ("id"
                 missing for a notification; "name" = params.name or params.uri)
    rule         the rule that answered: its "name", else its index in the rule list,
                 else "default"; null when nothing answered (incomplete request)
    complete     false when the connection ended first (then also "error")
    error        why the request could not be read or parsed (then "raw_b64" has what
                 was read)

--scenario FILE: JSON, either a list of rules or {"rules": [...], "default": true|false}.
Rules are tried in order; the first that matches answers the request. When none
matches, the built-in default answers (or, with "default": false, a 404).

A rule (every key optional):

    {"name": "poisoned-echo",            shown in the record's "rule"
     "match": {                          all given keys must hold (no "match": any request)
        "http_method": "POST",           request method, exact
        "path": "/mcp",                  target path (query excluded), exact
        "rpc_method": "tools/call",      a JSON-RPC method in the body (any message of a batch)
        "tool": "echo",                  params.name of a tools/call in the body
        "header": {"mcp-session-id": "abc"},   header present (name case-insensitive) and
                                         its value contains the given text ("" = present)
        "body_contains": "secret"        the raw body contains this text
     },
     "times": 1,                         answer at most this many requests, then stop matching
     "before_body": false,               true: answer as soon as the request head is read,
                                         without reading the body (match on http_method, path
                                         and header only); the record has "before_body": true
                                         and the body read so far (none), and the connection
                                         closes after the answer
     "action": "respond",                respond (default) | default (let the built-in
                                         answer, after "delay_ms") | close (close the
                                         connection without answering) | hang (never
                                         answer, keep the connection open)
     "delay_ms": 0,                      wait before the status line
     "status": 200, "reason": "OK",      status line (reason: the standard phrase by default)
     "version": "HTTP/1.1",
     "headers": [["Content-Type", "application/json"], ["Set-Cookie", "a=1"], ...],
                                         written exactly in this order and spelling, duplicates
                                         kept; a value may be {"b64": "..."} for exact bytes
                                         (strings are sent as UTF-8, placeholders substituted)
     "body": [chunk, ...],               see below; concatenated they are the body
     "framing": "content-length",        content-length (default): adds Content-Length unless
                                         "headers" has one (then the given one is sent as is,
                                         even if it lies) | chunked: adds
                                         "Transfer-Encoding: chunked" unless present, each
                                         non-empty chunk is one HTTP chunk, then "0", the
                                         trailers and the blank line | close: no length, the
                                         connection closes after the body | raw: nothing is
                                         added, the body bytes follow the header block verbatim
     "trailers": [["x-evil", "1"]],      chunked only
     "chunk_delay_ms": 0,                wait before every chunk after the first
     "then": "keep-alive",               after the response: keep-alive (default for
                                         content-length / chunked / raw) | close (default for
                                         close framing) | hold (keep the connection open,
                                         writing nothing, for "hold_ms" or until the peer
                                         closes; for chunked, the terminating chunk is not sent
                                         so the stream stays open, e.g. a GET SSE stream)
     "hold_ms": null,
     "raw": [chunk, ...],                instead of all of the above: these bytes, verbatim,
                                         as the whole response (status line included), then
                                         "then" (default close)
     "comment": "..."                    ignored
    }

Unknown keys, framings, actions are refused at start (exit status 1, a message on stderr), so a typo
cannot silently turn a rule off.

A body chunk is one of:

    "text"                               UTF-8, placeholders substituted
    {"b64": "..."}                       exact bytes
    {"json": value}                      compact JSON; a string that is exactly "{id_json}"
                                         becomes the request's id value (number or string),
                                         other strings get placeholders substituted
    {"sse": {"event": "message", "id": "1", "retry": 1000, "data": value}}
                                         one SSE event: data is JSON-encoded (as {"json"})
                                         unless it is a string; ends with a blank line
    and any of these as an object may add "delay_ms": N (wait before this chunk).

Placeholders (in text chunks, "json" strings and header values):

    {id}          the request's JSON-RPC id as text (1, abc); for a batch, the first id
    {id_json}     the same as JSON (1, "abc"); null when the request has no id
    {method}      the request's JSON-RPC method
    {session_id}  the request's Mcp-Session-Id, or the one the built-in default issues
    {protocol_version}  initialize's params.protocolVersion, else the request's
                  MCP-Protocol-Version header, else 2025-11-25

Example: answer the first tools/call with a poisoned result, over SSE, then hang up:

    [{"name": "poison", "match": {"rpc_method": "tools/call"}, "times": 1,
      "headers": [["Content-Type", "text/event-stream"]], "framing": "chunked",
      "body": [{"sse": {"data": {"jsonrpc": "2.0", "id": "{id_json}",
                                  "result": {"content": [{"type": "text", "text": "<IMPORTANT>..."}]}}}}],
      "then": "close"}]

The built-in default (a minimal, valid MCP server on any path):

    (every answer to a POST is 200 application/json with Content-Length, and carries
    Mcp-Session-Id; at 2026-07-28 results get resultType, and lists cacheScope/ttlMs)
    POST initialize       200 application/json, Mcp-Session-Id: <32 hex>; echoes the
                          client's protocolVersion (any); capabilities tools, prompts,
                          resources, logging; serverInfo {"name": "evil-upstream"}
    POST server/discover  200, a 2026-07-28 DiscoverResult
    POST notification or response only   202, empty body
    POST tools/list       one tool: echo(text: string)
    POST tools/call echo  {"content": [{"type": "text", "text": <text>}]}; other tools:
                          a result with isError true
    POST ping, logging/setLevel, resources/subscribe|unsubscribe   {}
    POST prompts/list, resources/list, resources/templates/list    empty lists
    POST completion/complete                                        no values
    POST other method     JSON-RPC error -32601; a batch gets an array of answers
    POST bad JSON         400, JSON-RPC error -32700
    GET                   200 text/event-stream (chunked), held open, nothing sent
    DELETE                200, empty body
    other methods         405
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as _dt
import http
import json
import re
import secrets
import signal
import sys
from typing import Any

MAX_HEAD = 1 << 20
MAX_BODY = 64 << 20
DEFAULT_VERSION = "2025-11-25"
SESSION_ID = secrets.token_hex(16)

ECHO_TOOL = {
    "name": "echo",
    "description": "Echoes the text back.",
    "inputSchema": {
        "type": "object",
        "properties": {"text": {"type": "string"}},
        "required": ["text"],
    },
}


class Incomplete(Exception):
    """The connection ended (or broke the framing) before the request was complete."""

    def __init__(self, why: str, raw: bytes, partial: dict[str, Any] | None = None) -> None:
        super().__init__(why)
        self.raw = raw
        self.partial = partial


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat()


def latin1(b: bytes) -> str:
    return b.decode("latin-1")


def lenient_json(body: bytes) -> Any:
    text = body.decode("utf-8", errors="replace").lstrip("\ufeff").strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def rpc_messages(parsed: Any, body: bytes) -> list[dict[str, Any]]:
    """One summary per JSON-RPC message; a regex fallback when the body is not JSON."""
    items = parsed if isinstance(parsed, list) else [parsed]
    out = []
    for m in items:
        if not isinstance(m, dict):
            continue
        s: dict[str, Any] = {"method": m.get("method")}
        if "id" in m:
            s["id"] = m["id"]
        params = m.get("params")
        if isinstance(params, dict):
            name = params.get("name", params.get("uri"))
            if isinstance(name, str):
                s["name"] = name
        out.append(s)
    if not out and parsed is None:
        text = body.decode("utf-8", errors="replace")
        for method in re.findall(r'"method"\s*:\s*"([^"\\]*)"', text):
            out.append({"method": method})
    return out


class Request:
    def __init__(self) -> None:
        self.method = ""
        self.target = ""
        self.version = ""
        self.headers: list[tuple[str, str]] = []
        self.body = b""
        self.framing = "none"
        self.trailers: list[tuple[str, str]] = []
        # Answered from its head alone (a rule with "before_body").
        self.before_body = False

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def query(self) -> str:
        return self.target.split("?", 1)[1] if "?" in self.target else ""


async def read_request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, early: Any = None
) -> Request | None:
    """Reads one request; None on a clean end of connection before any byte. `early(req)`,
    asked once the head is read, True to stop there (the body is left unread)."""
    raw = bytearray()
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as e:
        if not e.partial:
            return None
        raise Incomplete("connection closed inside the request head", bytes(e.partial)) from None
    except asyncio.LimitOverrunError:
        raise Incomplete("request head too large", bytes(raw)) from None
    raw += head
    lines = head[:-4].split(b"\r\n")
    # Tolerate empty lines before the request line (RFC 9112 §2.2).
    while lines and not lines[0]:
        lines.pop(0)
    parts = lines[0].split(b" ") if lines else []
    if len(parts) != 3:
        raise Incomplete(f"bad request line {latin1(lines[0] if lines else b'')!r}", bytes(raw))
    req = Request()
    req.method, req.target, req.version = (latin1(p) for p in parts)
    for line in lines[1:]:
        if b":" not in line:
            raise Incomplete(f"bad header line {latin1(line)!r}", bytes(raw), partial_of(req))
        k, v = line.split(b":", 1)
        req.headers.append((latin1(k), latin1(v.strip(b" \t"))))
    if early is not None and early(req):
        req.before_body = True
        return req
    te = ",".join(v for k, v in req.headers if k.lower() == "transfer-encoding").lower()
    cl = req.header("content-length")
    if (req.header("expect") or "").lower() == "100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        await writer.drain()
    try:
        if "chunked" in te:
            req.framing = "chunked"
            body = bytearray()
            while True:
                size_line = await reader.readuntil(b"\r\n")
                raw += size_line
                size_text = size_line[:-2].split(b";", 1)[0].strip()
                try:
                    size = int(size_text, 16)
                except ValueError:
                    raise Incomplete(f"bad chunk size {latin1(size_text)!r}", bytes(raw), partial_of(req, body)) from None
                if size == 0:
                    break
                if len(body) + size > MAX_BODY:
                    raise Incomplete("request body too large", bytes(raw), partial_of(req, body))
                data = await reader.readexactly(size + 2)
                raw += data
                body += data[:-2]
            while True:
                line = await reader.readuntil(b"\r\n")
                raw += line
                if line == b"\r\n":
                    break
                k, _, v = line[:-2].partition(b":")
                req.trailers.append((latin1(k), latin1(v.strip(b" \t"))))
            req.body = bytes(body)
        elif cl is not None:
            req.framing = "content-length"
            try:
                n = int(cl.strip())
            except ValueError:
                raise Incomplete(f"bad content-length {cl!r}", bytes(raw), partial_of(req)) from None
            if n < 0 or n > MAX_BODY:
                raise Incomplete(f"content-length {n} out of range", bytes(raw), partial_of(req))
            try:
                req.body = await reader.readexactly(n)
            except asyncio.IncompleteReadError as e:
                raw += e.partial
                raise Incomplete(
                    f"connection closed after {len(e.partial)} of {n} body bytes",
                    bytes(raw),
                    partial_of(req, e.partial),
                ) from None
    except asyncio.IncompleteReadError as e:
        raw += e.partial
        raise Incomplete("connection closed inside a chunked body", bytes(raw), partial_of(req)) from None
    return req


def partial_of(req: Request, body: bytes = b"") -> dict[str, Any]:
    return {
        "method": req.method,
        "target": req.target,
        "version": req.version,
        "headers": [list(h) for h in req.headers],
        "body_b64": base64.b64encode(bytes(body)).decode(),
    }


class Context:
    """What placeholders and the default server know about one request."""

    def __init__(self, req: Request) -> None:
        self.req = req
        self.parsed = lenient_json(req.body)
        self.rpc = rpc_messages(self.parsed, req.body)
        self.id: Any = None
        self.has_id = False
        for m in self.rpc:
            if "id" in m and m.get("method") is not None:
                self.id, self.has_id = m["id"], True
                break
        self.method = next((m["method"] for m in self.rpc if m.get("method")), "")
        first = self.parsed[0] if isinstance(self.parsed, list) and self.parsed else self.parsed
        pv = None
        if isinstance(first, dict) and first.get("method") == "initialize":
            params = first.get("params")
            if isinstance(params, dict) and isinstance(params.get("protocolVersion"), str):
                pv = params["protocolVersion"]
        self.protocol_version = pv or req.header("mcp-protocol-version") or DEFAULT_VERSION
        self.session_id = req.header("mcp-session-id") or SESSION_ID
        # A 2026-07-28 (stateless era) request: says so in its header or its _meta envelope.
        meta = first.get("params", {}).get("_meta") if isinstance(first, dict) and isinstance(first.get("params"), dict) else None
        self.stateless = (req.header("mcp-protocol-version") or "").startswith("2026-") or (
            isinstance(meta, dict) and "io.modelcontextprotocol/protocolVersion" in meta
        )

    def subst(self, text: str) -> str:
        if "{" not in text:
            return text
        id_text = "" if self.id is None else (self.id if isinstance(self.id, str) else json.dumps(self.id))
        for k, v in (
            ("{id_json}", json.dumps(self.id)),
            ("{id}", id_text),
            ("{method}", self.method),
            ("{session_id}", self.session_id),
            ("{protocol_version}", self.protocol_version),
        ):
            text = text.replace(k, v)
        return text

    def subst_json(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.id if value == "{id_json}" else self.subst(value)
        if isinstance(value, list):
            return [self.subst_json(v) for v in value]
        if isinstance(value, dict):
            return {self.subst(k): self.subst_json(v) for k, v in value.items()}
        return value


def compact(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def chunk_bytes(chunk: Any, ctx: Context) -> bytes:
    if isinstance(chunk, str):
        return ctx.subst(chunk).encode()
    if not isinstance(chunk, dict):
        raise ValueError(f"bad body chunk {chunk!r}")
    if "b64" in chunk:
        return base64.b64decode(chunk["b64"])
    if "text" in chunk:
        return ctx.subst(chunk["text"]).encode()
    if "json" in chunk:
        return compact(ctx.subst_json(chunk["json"]))
    if "sse" in chunk:
        ev = chunk["sse"]
        out = b""
        if "event" in ev:
            out += b"event: " + ctx.subst(str(ev["event"])).encode() + b"\n"
        if "id" in ev:
            out += b"id: " + ctx.subst(str(ev["id"])).encode() + b"\n"
        if "retry" in ev:
            out += b"retry: " + str(ev["retry"]).encode() + b"\n"
        if "data" in ev:
            data = ev["data"]
            text = ctx.subst(data).encode() if isinstance(data, str) else compact(ctx.subst_json(data))
            for line in text.split(b"\n"):
                out += b"data: " + line + b"\n"
        return out + b"\n"
    raise ValueError(f"bad body chunk {chunk!r}")


def header_bytes(value: Any, ctx: Context) -> bytes:
    if isinstance(value, dict) and "b64" in value:
        return base64.b64decode(value["b64"])
    return ctx.subst(str(value)).encode()


def matches(rule: dict[str, Any], ctx: Context) -> bool:
    m = rule.get("match") or {}
    req = ctx.req
    if "http_method" in m and req.method != m["http_method"]:
        return False
    if "path" in m and req.path != m["path"]:
        return False
    if "rpc_method" in m and not any(r.get("method") == m["rpc_method"] for r in ctx.rpc):
        return False
    if "tool" in m and not any(r.get("method") == "tools/call" and r.get("name") == m["tool"] for r in ctx.rpc):
        return False
    for name, want in (m.get("header") or {}).items():
        got = [v for k, v in req.headers if k.lower() == name.lower()]
        if not any(want in v for v in got):
            return False
    if "body_contains" in m and m["body_contains"].encode() not in req.body:
        return False
    return True


class Server:
    def __init__(self, rules: list[dict[str, Any]], default: bool, record: str | None) -> None:
        self.rules = rules
        self.default = default
        self.used = [0] * len(rules)
        self.record_path = record
        self.seq = 0
        self.conns = 0

    def record(self, line: dict[str, Any]) -> None:
        self.seq += 1
        line = {"seq": self.seq, "time": now(), **line}
        if self.record_path:
            with open(self.record_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(line, ensure_ascii=False, sort_keys=True) + "\n")
                f.flush()

    def before_body(self, req: Request) -> bool:
        """Whether a "before_body" rule that can still answer matches this head."""
        ctx = Context(req)
        for i, rule in enumerate(self.rules):
            times = rule.get("times")
            if not rule.get("before_body") or (times is not None and self.used[i] >= times):
                continue
            if matches(rule, ctx):
                return True
        return False

    def pick(self, ctx: Context) -> tuple[Any, dict[str, Any] | None]:
        for i, rule in enumerate(self.rules):
            times = rule.get("times")
            if times is not None and self.used[i] >= times:
                continue
            # A head-only request is answered by a before_body rule, a whole one by the others.
            if bool(rule.get("before_body")) != ctx.req.before_body:
                continue
            if matches(rule, ctx):
                self.used[i] += 1
                return rule.get("name", i), rule
        return ("default" if self.default else "none"), None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.conns += 1
        conn = self.conns
        n = 0
        try:
            while True:
                try:
                    req = await read_request(reader, writer, self.before_body)
                except Incomplete as e:
                    n += 1
                    line: dict[str, Any] = {"conn": conn, "conn_seq": n, "complete": False, "error": str(e)}
                    line["raw_b64"] = base64.b64encode(e.raw).decode()
                    if e.partial:
                        line.update(e.partial)
                    line["rule"] = None
                    self.record(line)
                    return
                if req is None:
                    return
                n += 1
                ctx = Context(req)
                name, rule = self.pick(ctx)
                self.record(
                    {
                        "conn": conn,
                        "conn_seq": n,
                        "complete": True,
                        "method": req.method,
                        "target": req.target,
                        "path": req.path,
                        "query": req.query,
                        "version": req.version,
                        "headers": [list(h) for h in req.headers],
                        "framing": req.framing,
                        "body_b64": base64.b64encode(req.body).decode(),
                        "body": text_or_none(req.body),
                        "trailers": [list(t) for t in req.trailers],
                        "json": ctx.parsed,
                        "rpc": ctx.rpc,
                        "rule": name,
                        "before_body": req.before_body,
                    }
                )
                if rule is None:
                    rule = default_response(ctx) if self.default else {"status": 404, "body": ["no rule matched"]}
                elif rule.get("action") == "default":
                    if rule.get("delay_ms"):
                        await asyncio.sleep(rule["delay_ms"] / 1000)
                    rule = default_response(ctx)
                keep = await self.respond(reader, writer, ctx, rule)
                client_close = (
                    (req.header("connection") or "").lower() == "close" or req.version == "HTTP/1.0" or req.before_body
                )
                if not keep or client_close:
                    return
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            try:
                writer.close()
            except Exception:  # noqa: BLE001
                pass

    async def respond(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ctx: Context, rule: dict[str, Any]
    ) -> bool:
        """Writes the response; True to keep the connection for another request."""
        action = rule.get("action", "respond")
        if action == "close":
            return False
        if action == "hang":
            await hold(reader, rule.get("hold_ms"))
            return False
        if rule.get("delay_ms"):
            await asyncio.sleep(rule["delay_ms"] / 1000)
        if "raw" in rule:
            for chunk in rule["raw"]:
                await pause(chunk)
                writer.write(chunk_bytes(chunk, ctx))
                await writer.drain()
            return await after(reader, rule.get("then", "close"), rule.get("hold_ms"))

        framing = rule.get("framing", "content-length")
        if framing not in ("content-length", "chunked", "close", "raw"):
            raise ValueError(f"bad framing {framing!r}")
        status = int(rule.get("status", 200))
        reason = rule.get("reason")
        if reason is None:
            try:
                reason = http.HTTPStatus(status).phrase
            except ValueError:
                reason = "Unknown"
        headers = [(str(k).encode(), header_bytes(v, ctx)) for k, v in rule.get("headers", [])]
        names = {k.lower() for k, _ in headers}
        chunks = rule.get("body", [])
        if framing == "content-length" and b"content-length" not in names:
            total = sum(len(chunk_bytes(c, ctx)) for c in chunks)
            headers.append((b"Content-Length", str(total).encode()))
        if framing == "chunked" and b"transfer-encoding" not in names:
            headers.append((b"Transfer-Encoding", b"chunked"))
        head = f"{rule.get('version', 'HTTP/1.1')} {status} {reason}\r\n".encode()
        head += b"".join(k + b": " + v + b"\r\n" for k, v in headers) + b"\r\n"
        writer.write(head)
        await writer.drain()
        gap = rule.get("chunk_delay_ms", 0)
        for i, chunk in enumerate(chunks):
            if i and gap:
                await asyncio.sleep(gap / 1000)
            await pause(chunk)
            data = chunk_bytes(chunk, ctx)
            if framing == "chunked":
                if data:
                    writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            else:
                writer.write(data)
            await writer.drain()
        then = rule.get("then", "close" if framing == "close" else "keep-alive")
        if framing == "chunked" and then != "hold":
            trailers = b"".join(
                str(k).encode() + b": " + header_bytes(v, ctx) + b"\r\n" for k, v in rule.get("trailers", [])
            )
            writer.write(b"0\r\n" + trailers + b"\r\n")
            await writer.drain()
        return await after(reader, then, rule.get("hold_ms"))


async def pause(chunk: Any) -> None:
    if isinstance(chunk, dict) and chunk.get("delay_ms"):
        await asyncio.sleep(chunk["delay_ms"] / 1000)


async def after(reader: asyncio.StreamReader, then: str, hold_ms: Any) -> bool:
    if then == "hold":
        await hold(reader, hold_ms)
    return then == "keep-alive"


async def hold(reader: asyncio.StreamReader, hold_ms: Any) -> None:
    """Keeps the connection open, writing nothing, until hold_ms pass or the peer closes
    (anything the peer sends meanwhile is read and dropped)."""

    async def until_eof() -> None:
        while await reader.read(65536):
            pass

    try:
        await asyncio.wait_for(until_eof(), None if hold_ms is None else hold_ms / 1000)
    except (asyncio.TimeoutError, ConnectionError):
        pass


def text_or_none(body: bytes) -> str | None:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return None


# ---------------------------------------------------------------------------------------------
# The built-in default: a minimal valid MCP server.


def default_result(msg: dict[str, Any], ctx: Context) -> dict[str, Any] | None:
    """The JSON-RPC answer to one message; None for notifications and responses."""
    if "method" not in msg or "id" not in msg:
        return None
    method = msg["method"]
    params = msg.get("params") if isinstance(msg.get("params"), dict) else {}
    result: Any
    if method == "initialize":
        version = params.get("protocolVersion") if isinstance(params.get("protocolVersion"), str) else DEFAULT_VERSION
        result = {
            "protocolVersion": version,
            "capabilities": {
                "tools": {"listChanged": False},
                "prompts": {"listChanged": False},
                "resources": {"listChanged": False, "subscribe": False},
                "logging": {},
            },
            "serverInfo": {"name": "evil-upstream", "version": "1.0.0"},
        }
    elif method == "server/discover":
        result = {
            "supportedVersions": ["2026-07-28"],
            "capabilities": {"tools": {"listChanged": False}},
            "resultType": "complete",
            "cacheScope": "private",
            "ttlMs": 0,
            "_meta": {"io.modelcontextprotocol/serverInfo": {"name": "evil-upstream", "version": "1.0.0"}},
        }
    elif method == "tools/list":
        result = {"tools": [ECHO_TOOL]}
    elif method == "tools/call":
        args = params.get("arguments") if isinstance(params.get("arguments"), dict) else {}
        if params.get("name") == "echo":
            result = {"content": [{"type": "text", "text": str(args.get("text", ""))}], "isError": False}
        else:
            result = {"content": [{"type": "text", "text": f"Unknown tool: {params.get('name')}"}], "isError": True}
    elif method in ("ping", "logging/setLevel", "resources/subscribe", "resources/unsubscribe"):
        result = {}
    elif method == "prompts/list":
        result = {"prompts": []}
    elif method == "resources/list":
        result = {"resources": []}
    elif method == "resources/templates/list":
        result = {"resourceTemplates": []}
    elif method == "completion/complete":
        result = {"completion": {"values": [], "hasMore": False}}
    else:
        return {"jsonrpc": "2.0", "id": msg["id"], "error": {"code": -32601, "message": "Method not found", "data": method}}
    if ctx.stateless and method != "server/discover":
        # 2026-07-28 results carry these (the Python SDK client requires them).
        result["resultType"] = "complete"
        if method.endswith("/list"):
            result.update({"cacheScope": "private", "ttlMs": 0})
    return {"jsonrpc": "2.0", "id": msg["id"], "result": result}


def default_response(ctx: Context) -> dict[str, Any]:
    req = ctx.req
    json_headers = [["Content-Type", "application/json"], ["Mcp-Session-Id", ctx.session_id]]
    if req.method == "GET":
        return {
            "status": 200,
            "headers": [["Content-Type", "text/event-stream"], ["Cache-Control", "no-cache"]],
            "framing": "chunked",
            "then": "hold",
        }
    if req.method == "DELETE":
        return {"status": 200, "headers": json_headers[:1]}
    if req.method != "POST":
        return {"status": 405, "headers": [["Allow", "GET, POST, DELETE"]]}
    if ctx.parsed is None or not isinstance(ctx.parsed, (dict, list)):
        err = {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "Parse error"}}
        return {"status": 400, "headers": json_headers[:1], "body": [{"b64": base64.b64encode(compact(err)).decode()}]}
    items = ctx.parsed if isinstance(ctx.parsed, list) else [ctx.parsed]
    answers = [a for a in (default_result(m, ctx) for m in items if isinstance(m, dict)) if a is not None]
    if not answers:
        return {"status": 202, "headers": json_headers}
    out: Any = answers if isinstance(ctx.parsed, list) else answers[0]
    # b64: the answer's own strings must not go through placeholder substitution.
    return {"status": 200, "headers": json_headers, "body": [{"b64": base64.b64encode(compact(out)).decode()}]}


# ---------------------------------------------------------------------------------------------


RULE_KEYS = {
    "name", "match", "times", "action", "delay_ms", "status", "reason", "version", "headers",
    "body", "framing", "trailers", "chunk_delay_ms", "then", "hold_ms", "raw", "comment",
    "before_body",
}
MATCH_KEYS = {"http_method", "path", "rpc_method", "tool", "header", "body_contains"}
CHOICES = {
    "action": ("respond", "default", "close", "hang"),
    "framing": ("content-length", "chunked", "close", "raw"),
    "then": ("keep-alive", "close", "hold"),
}


def check_chunk(where: str, chunk: Any) -> None:
    if isinstance(chunk, str):
        return
    kinds = [k for k in ("b64", "text", "json", "sse") if isinstance(chunk, dict) and k in chunk]
    if len(kinds) != 1 or set(chunk) - {kinds[0], "delay_ms"}:
        raise SystemExit(f"--scenario {where}: a chunk is a string or one of b64/text/json/sse (+ delay_ms): {chunk!r}")
    if kinds[0] == "b64":
        base64.b64decode(chunk["b64"], validate=True)


def check_rules(rules: list[Any]) -> None:
    """Refuses typos up front: a misspelt key would otherwise be ignored silently."""
    for i, rule in enumerate(rules):
        where = f"rule {i}"
        if not isinstance(rule, dict):
            raise SystemExit(f"--scenario {where} is not an object")
        where = f"rule {rule.get('name', i)!r}"
        if set(rule) - RULE_KEYS:
            raise SystemExit(f"--scenario {where}: unknown keys {sorted(set(rule) - RULE_KEYS)}")
        if set(rule.get("match") or {}) - MATCH_KEYS:
            raise SystemExit(f"--scenario {where}: unknown match keys {sorted(set(rule['match']) - MATCH_KEYS)}")
        if rule.get("before_body") and set(rule.get("match") or {}) - {"http_method", "path", "header"}:
            raise SystemExit(f"--scenario {where}: a before_body rule matches on http_method, path and header only")
        for key, allowed in CHOICES.items():
            if key in rule and rule[key] not in allowed:
                raise SystemExit(f"--scenario {where}: {key} must be one of {allowed}, got {rule[key]!r}")
        for key in ("headers", "trailers"):
            for h in rule.get(key, []):
                if not (isinstance(h, list) and len(h) == 2 and isinstance(h[0], str)):
                    raise SystemExit(f"--scenario {where}: {key} entries are [name, value] pairs, got {h!r}")
        for key in ("body", "raw"):
            for chunk in rule.get(key, []):
                check_chunk(where, chunk)


def load_scenario(path: str | None) -> tuple[list[dict[str, Any]], bool]:
    if not path:
        return [], True
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    default = True
    if isinstance(data, dict):
        if set(data) - {"rules", "default", "comment"}:
            raise SystemExit(f"--scenario: unknown top-level keys {sorted(set(data) - {'rules', 'default', 'comment'})}")
        default = bool(data.get("default", True))
        data = data.get("rules", [])
    if not isinstance(data, list):
        raise SystemExit("--scenario must be a JSON list of rules or {\"rules\": [...], \"default\": bool}")
    check_rules(data)
    return data, default


async def amain(args: argparse.Namespace) -> None:
    rules, default = load_scenario(args.scenario)
    server = Server(rules, default, args.record)
    srv = await asyncio.start_server(server.handle, args.host, args.port, limit=MAX_HEAD)
    port = srv.sockets[0].getsockname()[1]
    sys.stdout.write(f"READY {port}\n")
    sys.stdout.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with srv:
        await stop.wait()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--scenario", metavar="FILE", help="JSON rules (see above); default: the built-in MCP server")
    p.add_argument("--record", metavar="FILE", help="append one JSON line per request received")
    asyncio.run(amain(p.parse_args()))


if __name__ == "__main__":
    main()
