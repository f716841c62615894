#!/usr/bin/env python3
"""Human approval end to end: the official Python SDK client (mcp 2.3.0,
unchanged) calls a risky tool over MCP 2026-07-28 through Portcullis; the
filter answers `input_required` with a URL-mode elicitation; this script's
elicitation callback does what a person does: opens the URL in a browser
(headless Chromium, driven over the DevTools protocol, signed in with the
approver's bearer token) and clicks Approve or Deny, then accepts the
elicitation. The SDK's own retry loop then retries the call.

Usage:
    approval_client.py --url URL --tool NAME --arguments JSON --decision approve|deny|none
                       --chromium PATH --profile DIR [--screenshots DIR] [--replay]
    approval_client.py --open PAGE_URL --decision approve|deny|none --chromium PATH --profile DIR
                       (only the person's part: the page of a request another client was sent to)
    The approver's token is read from the environment (PORTCULLIS_APPROVER_TOKEN), never argv.

Output (stdout, one JSON line each):
    {"op": "elicitation", "mode", "url", "message"}          each elicitation the client got
    {"op": "page", "note", "list_has_request"}              what the browser saw
    {"op": "call", "ok", "result"|"error"}                  the SDK's call_tool outcome
    {"op": "replay", "ok", "result"|"error"}                (--replay) the same requestState again
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from typing import Any

import anyio
import httpx2
from mcp import Client
from mcp import types
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError


def emit(line: dict[str, Any]) -> None:
    print(json.dumps(line), flush=True)


class Cdp:
    """A minimal Chrome DevTools Protocol client over a plain WebSocket."""

    def __init__(self, ws_url: str) -> None:
        rest = ws_url.split("://", 1)[1]
        hostport, path = rest.split("/", 1)
        host, port = hostport.split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                raise RuntimeError("DevTools closed the connection")
            head += chunk
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise RuntimeError(f"DevTools refused the WebSocket: {head[:100]!r}")
        self.next_id = 0

    def _send(self, text: str) -> None:
        data = text.encode()
        mask = os.urandom(4)
        header = bytearray([0x81])
        n = len(data)
        if n < 126:
            header.append(0x80 | n)
        elif n < 65536:
            header.append(0x80 | 126)
            header += struct.pack(">H", n)
        else:
            header.append(0x80 | 127)
            header += struct.pack(">Q", n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        self.sock.sendall(bytes(header) + mask + masked)

    def _read_exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise RuntimeError("DevTools closed the connection")
            buf += chunk
        return buf

    def _recv(self) -> str:
        message = b""
        while True:
            b0, b1 = self._read_exact(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read_exact(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read_exact(8))[0]
            payload = self._read_exact(n)
            if b0 & 0x0F in (0x1, 0x0):
                message += payload
                if b0 & 0x80:
                    return message.decode()

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        my = self.next_id
        self._send(json.dumps({"id": my, "method": method, "params": params}))
        while True:
            msg = json.loads(self._recv())
            if msg.get("id") == my:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def eval(self, expression: str) -> Any:
        r = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return r.get("result", {}).get("value")

    def goto(self, url: str) -> None:
        self.call("Page.navigate", url=url)
        self.wait_for(f"location.href === {json.dumps(url)} && document.readyState === 'complete'")

    def wait_for(self, expression: str, timeout: float = 20) -> None:
        end = time.time() + timeout
        while time.time() < end:
            if self.eval(expression):
                return
            time.sleep(0.1)
        raise RuntimeError(f"timed out waiting for {expression}")

    def screenshot(self, path: str) -> None:
        r = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        with open(path, "wb") as f:
            f.write(base64.b64decode(r["data"]))


class Browser:
    """Headless Chromium with a DevTools port."""

    def __init__(self, chromium: str, profile: str) -> None:
        os.makedirs(profile, exist_ok=True)
        port_file = os.path.join(profile, "DevToolsActivePort")
        if os.path.exists(port_file):
            os.remove(port_file)
        self.proc = subprocess.Popen(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                f"--user-data-dir={profile}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        end = time.time() + 60
        while not os.path.exists(port_file) or not open(port_file).read().strip():
            if time.time() > end:
                raise RuntimeError("Chromium did not open its DevTools port")
            time.sleep(0.1)
        port = int(open(port_file).read().split()[0])
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list"))
        page = next(t for t in targets if t.get("type") == "page")
        self.cdp = Cdp(page["webSocketDebuggerUrl"])
        self.cdp.call("Page.enable")
        self.cdp.call("Network.enable")
        self.cdp.call(
            "Emulation.setDeviceMetricsOverride", width=1180, height=820, deviceScaleFactor=1, mobile=False
        )

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def approve_in_browser(browser: Browser, url: str, decision: str, token: str, shots: str | None) -> dict[str, Any]:
    """What a person does: sign in, look at the list and the request, decide."""
    cdp = browser.cdp
    cdp.call("Network.setExtraHTTPHeaders", headers={"Authorization": f"Bearer {token}"})
    list_url = url.rsplit("/", 1)[0]
    request_id = url.rsplit("/", 1)[1]
    cdp.goto(list_url)
    listed = bool(cdp.eval(f"!!document.querySelector('a[href=\"/approvals/{request_id}\"]')"))
    if shots:
        cdp.screenshot(os.path.join(shots, "list.png"))
    cdp.goto(url)
    if shots:
        cdp.screenshot(os.path.join(shots, "request.png"))
    note = None
    if decision in ("approve", "deny"):
        if not cdp.eval(f"!!document.querySelector('button[value={decision}]')"):
            # No buttons for someone without the rule's role: the page says why.
            note = cdp.eval("(document.querySelector('.warn') || {}).textContent || ''")
            return {"op": "page", "note": note, "list_has_request": listed}
        cdp.eval(f"document.querySelector('button[value={decision}]').click()")
        cdp.wait_for("!!document.querySelector('.note')")
        note = cdp.eval("document.querySelector('.note').textContent")
        if shots:
            cdp.screenshot(os.path.join(shots, f"{decision}d.png"))
    return {"op": "page", "note": note, "list_has_request": listed}


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url")
    ap.add_argument("--tool")
    ap.add_argument("--arguments")
    ap.add_argument("--open", metavar="PAGE_URL")
    ap.add_argument("--decision", choices=["approve", "deny", "none"], required=True)
    ap.add_argument("--chromium", required=True)
    ap.add_argument("--profile", required=True)
    ap.add_argument("--screenshots")
    ap.add_argument("--replay", action="store_true")
    ap.add_argument("--max-rounds", type=int, default=3)
    ap.add_argument("--wait-before-retry", type=float, default=0)
    args = ap.parse_args()
    token = os.environ.get("PORTCULLIS_APPROVER_TOKEN", "")
    if args.open:
        browser = Browser(args.chromium, args.profile)
        try:
            emit(approve_in_browser(browser, args.open, args.decision, token, args.screenshots))
        finally:
            browser.close()
        return 0
    if not (args.url and args.tool and args.arguments):
        ap.error("--url, --tool and --arguments are needed (or --open)")
    arguments = json.loads(args.arguments)

    states: list[str] = []

    async def on_response(response: httpx2.Response) -> None:
        # Only to replay the state later (an attacker's move, not the
        # SDK's): the SDK itself never needs this.
        if response.request.method == "POST" and response.headers.get("content-type", "").startswith(
            "application/json"
        ):
            body = await response.aread()
            try:
                v = json.loads(body)
            except ValueError:
                return
            state = (v.get("result") or {}).get("requestState") if isinstance(v, dict) else None
            if isinstance(state, str):
                states.append(state)

    browser = Browser(args.chromium, args.profile)
    decided = False

    async def elicitation(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        nonlocal decided
        data = params.model_dump(mode="json", by_alias=True, exclude_none=True)
        emit({"op": "elicitation", "mode": data.get("mode"), "url": data.get("url"), "message": data.get("message")})
        if not decided:
            decided = True
            seen = await anyio.to_thread.run_sync(
                approve_in_browser, browser, data["url"], args.decision, token, args.screenshots
            )
            emit(seen)
            if args.wait_before_retry:
                await anyio.sleep(args.wait_before_retry)
        if args.decision == "none":
            return types.ElicitResult(action="decline")
        return types.ElicitResult(action="accept")

    http_client = httpx2.AsyncClient(timeout=30, event_hooks={"response": [on_response]})
    try:
        async with http_client:
            transport = streamable_http_client(args.url, http_client=http_client)
            async with Client(
                transport,
                mode="2026-07-28",
                elicitation_callback=elicitation,
                input_required_max_rounds=args.max_rounds,
            ) as client:
                try:
                    result = await client.call_tool(args.tool, arguments)
                    emit({"op": "call", "ok": True, "result": result.model_dump(mode="json", by_alias=True, exclude_none=True)})
                except MCPError as e:
                    emit({"op": "call", "ok": False, "error": {"code": e.code, "message": e.message, "data": e.data}})
                if args.replay and states:
                    # The same state again, as a replaying client would.
                    try:
                        r = await client.session.call_tool(
                            args.tool,
                            arguments,
                            input_responses={"portcullis_approval": types.ElicitResult(action="accept")},
                            request_state=states[-1],
                            allow_input_required=True,
                        )
                        emit({"op": "replay", "ok": True, "result": r.model_dump(mode="json", by_alias=True, exclude_none=True)})
                    except MCPError as e:
                        emit({"op": "replay", "ok": False, "error": {"code": e.code, "message": e.message, "data": e.data}})
    finally:
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(anyio.run(main))
