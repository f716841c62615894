#!/usr/bin/env python3
"""Run tests/e2e/mcp_client.py directly against tests/e2e/mcp_server.py (no proxy).

For every protocol revision x {SSE, --json-response} x {stateful, --stateless} it starts a
server with --record, runs smoke_script.json plus a progress call, checks every step
succeeded with the expected values, checks the recorded wire traffic (versions, session
ids, Mcp-Method/Mcp-Name, that extra client headers arrive), and prints one line per case
and a closing `N passed, N failed`.

    target/e2e-venv/bin/python tests/e2e/selfcheck.py [--wire-summary FILE] [--only 2026-07-28]

--wire-summary writes a compact per-case listing of every recorded HTTP exchange
(method, status, request headers that matter, JSON-RPC method, response content type).
Traffic goes only to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PY = sys.executable
VERSIONS = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28"]
FIXED_TIME = "2026-01-01T00:00:00+00:00"
INTERESTING = [
    "accept",
    "content-type",
    "mcp-protocol-version",
    "mcp-session-id",
    "mcp-method",
    "mcp-name",
    "last-event-id",
    "authorization",
    "x-e2e-test",
]


def start_server(extra: list[str], record: Path, root: Path) -> tuple[subprocess.Popen[str], int]:
    cmd = [PY, str(HERE / "mcp_server.py"), "--port", "0", "--record", str(record), "--root", str(root)]
    cmd += ["--fixed-time", FIXED_TIME, *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("READY "):
        proc.kill()
        raise RuntimeError(f"server did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}")
    return proc, int(line.split()[1])


def stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_client(url: str, version: str, script: list[dict[str, Any]], extra: list[str]) -> tuple[int, list[dict]]:
    cmd = [PY, str(HERE / "mcp_client.py"), "--url", url, "--protocol-version", version, "--script", "-"]
    cmd += extra
    out = subprocess.run(cmd, input=json.dumps(script), capture_output=True, text=True, timeout=120)
    lines = [json.loads(x) for x in out.stdout.splitlines() if x.strip()]
    if out.returncode != 0:
        sys.stderr.write(out.stderr)
    return out.returncode, lines


def rpc_method(body: str) -> str:
    try:
        obj = json.loads(body)
    except ValueError:
        return ""
    if isinstance(obj, dict):
        if "method" in obj:
            return obj["method"] + ("" if "id" in obj else " (notification)")
        if "result" in obj or "error" in obj:
            return "(response)"
    return "?"


def summarize(records: list[dict[str, Any]]) -> list[str]:
    out = []
    for r in sorted(records, key=lambda r: r["seq"]):
        hs = {k: r["headers"][k] for k in INTERESTING if k in r["headers"]}
        if "mcp-session-id" in hs:
            hs["mcp-session-id"] = "<sid>"
        rh = r.get("response_headers", {})
        resp = f"{r.get('status')} {rh.get('content-type', '-')}"
        if "mcp-session-id" in rh:
            resp += " +Mcp-Session-Id"
        out.append(f"  {r['method']:6} {r['path']} {rpc_method(r['body']):36} -> {resp:34} {json.dumps(hs)}")
    return out


def check_case(version: str, json_resp: bool, stateless: bool, tmp: Path, root: Path) -> tuple[list[str], list[str]]:
    record = tmp / f"rec-{version}-{int(json_resp)}-{int(stateless)}.jsonl"
    extra = (["--json-response"] if json_resp else []) + (["--stateless"] if stateless else [])
    proc, port = start_server(extra, record, root)
    problems: list[str] = []
    try:
        script = json.loads((HERE / "smoke_script.json").read_text())
        script.append({"op": "call_tool", "name": "countdown", "arguments": {"n": 3}, "progress": True})
        rc, lines = run_client(
            f"http://127.0.0.1:{port}/mcp",
            version,
            script,
            ["--header", "Authorization=Bearer client-secret", "--header", "X-E2E-Test=1"],
        )
        time.sleep(0.3)  # let the GET stream's record land
    finally:
        stop(proc)
    if rc != 0:
        problems.append(f"client exit {rc}")
    if not lines or lines[0].get("op") != "connect" or not lines[0].get("ok"):
        problems.append(f"connect failed: {lines[:1]}")
    elif lines[0].get("protocol_version") != version:
        problems.append(f"negotiated {lines[0].get('protocol_version')}")
    steps = lines[1:]
    if len(steps) != len(script):
        problems.append(f"{len(steps)} step lines for {len(script)} steps")
    for step, line in zip(script, steps):
        if not line.get("ok"):
            problems.append(f"step {step} failed: {line}")
    expected_text = {
        "echo": "hi",
        "get-weather": "Weather in Paris: snowy, 14C",
        "get-time": FIXED_TIME,
        "delete-file": "deleted /etc/passwd",
        "add": "42",
        "read-file": "hello from root\n",
        "countdown": "liftoff",
    }
    for step, line in zip(script, steps):
        if step["op"] == "call_tool" and line.get("ok"):
            text = line["result"]["content"][0]["text"]
            if text != expected_text[step["name"]]:
                problems.append(f"{step['name']} returned {text!r}")
            # --json-response: the SDK server drops request-scoped notifications (no stream to put them on)
            want = 0 if json_resp else 3
            if step.get("progress") and len(line["result"].get("_progress", [])) != want:
                problems.append(f"progress notifications: {line['result'].get('_progress')}")

    records = [json.loads(x) for x in record.read_text().splitlines()] if record.exists() else []
    posts = [r for r in records if r["method"] == "POST"]
    if not all(r["headers"].get("authorization") == "Bearer client-secret" for r in records):
        problems.append("authorization header missing on some request")
    if not all(r["headers"].get("x-e2e-test") == "1" for r in records):
        problems.append("x-e2e-test header missing on some request")
    if version == "2026-07-28":
        for r in posts:
            body = json.loads(r["body"])
            if r["headers"].get("mcp-protocol-version") != version:
                problems.append(f"POST without MCP-Protocol-Version: {r['body'][:80]}")
            if r["headers"].get("mcp-method") != body.get("method"):
                problems.append(f"Mcp-Method mismatch: {r['headers'].get('mcp-method')} vs {body.get('method')}")
            name = (body.get("params") or {}).get({"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}.get(body.get("method"), ""), None)
            if r["headers"].get("mcp-name") != name:
                problems.append(f"Mcp-Name {r['headers'].get('mcp-name')} vs {name}")
            if "mcp-session-id" in r["headers"]:
                problems.append("2026-07-28 request carried Mcp-Session-Id")
        if any(r["method"] != "POST" for r in records):
            problems.append("2026-07-28 used a non-POST request")
    else:
        if rpc_method(posts[0]["body"]) != "initialize" if posts else True:
            problems.append("first POST is not initialize")
        if not any(rpc_method(r["body"]) == "notifications/initialized (notification)" and r["status"] == 202 for r in posts):
            problems.append("no notifications/initialized answered 202")
        for r in posts[1:]:
            if r["headers"].get("mcp-protocol-version") != version:
                problems.append(f"POST after initialize without MCP-Protocol-Version {version}")
        has_sid = any("mcp-session-id" in r["headers"] for r in records)
        if stateless == has_sid:
            problems.append(f"stateless={stateless} but Mcp-Session-Id seen={has_sid}")
    return problems, summarize(records)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--wire-summary", metavar="FILE")
    p.add_argument("--only", action="append", help="restrict to these protocol versions")
    args = p.parse_args()
    versions = args.only or VERSIONS
    passed = failed = 0
    summary: list[str] = []
    with tempfile.TemporaryDirectory(prefix="portcullis-e2e-") as d:
        tmp = Path(d)
        root = tmp / "root"
        root.mkdir()
        (root / "a.txt").write_text("hello from root\n")
        for version in versions:
            for json_resp in (False, True):
                for stateless in (False, True):
                    name = f"{version} {'json' if json_resp else 'sse'} {'stateless' if stateless else 'stateful'}"
                    try:
                        problems, wire = check_case(version, json_resp, stateless, tmp, root)
                    except Exception as exc:  # noqa: BLE001
                        problems, wire = [f"{type(exc).__name__}: {exc}"], []
                    summary.append(f"== {name}")
                    summary.extend(wire)
                    if problems:
                        failed += 1
                        print(f"FAIL {name}")
                        for pr in problems:
                            print(f"    {pr}")
                    else:
                        passed += 1
                        print(f"ok   {name}")
    if args.wire_summary:
        Path(args.wire_summary).write_text("\n".join(summary) + "\n")
    print(f"{passed} passed, {failed} failed")
    sys.exit(0 if failed == 0 else 1)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
