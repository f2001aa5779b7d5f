#!/usr/bin/env python3
"""Report import cycles between sibling modules of the workspace's crates.

For every crate (a directory with Cargo.toml and src/lib.rs or src/main.rs) the script maps
each .rs file under src/ to its module path, reads every `crate::`, `super::` and `self::`
path (in `use` trees and in code, comments and string literals skipped) and resolves it to the
deepest module it names. Then, at every level of the module tree (the top-level modules of a
crate, and the submodules of each parent), sibling A depends on sibling B when anything inside
A names something inside B. A strongly connected group of two or more siblings is a cycle.

Usage: scripts/module-cycles.py [--no-tests] [CRATE_DIR ...]
  (default: every workspace member that has a src/ directory)
  --no-tests  ignore `#[cfg(test)]` modules (inline ones and files declared by them)

Exit status: 0 without cycles, 1 when a cycle is found, 2 on a usage error.
Python 3 standard library only.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
PATH_RE = re.compile(
    r"(?<![\w$])(crate|super|self)((?:\s*::\s*" + IDENT + r")+)"
)
USE_RE = re.compile(r"(?<![\w$])use\s+([^;]+);")
MOD_RE = re.compile(r"(#\[cfg\(test\)\]\s*)?(?:pub(?:\([^)]*\))?\s+)?mod\s+(" + IDENT + r")\s*([;{])")


def strip_code(text: str) -> str:
    """Blanks out comments, string and char literals, keeping offsets and newlines."""
    out = list(text)
    i, n = 0, len(text)

    def blank(a: int, b: int) -> None:
        for k in range(a, min(b, n)):
            if out[k] != "\n":
                out[k] = " "

    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            blank(i, j)
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            blank(i, j)
            i = j
        elif c == "r" and re.match(r'r#*"', text[i:i + 260]) and not re.match(r"\w", text[i - 1:i] or " "):
            hashes = re.match(r"r(#*)\"", text[i:]).group(1)
            end = text.find('"' + hashes, i + 2 + len(hashes))
            j = n if end < 0 else end + 1 + len(hashes)
            blank(i, j)
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            blank(i, j + 1)
            i = j + 1
        elif c == "'":
            m = re.match(r"'(\\(x..|u\{[0-9a-fA-F]+\}|.)|[^\\'])'", text[i:i + 12], re.S)
            if m:
                blank(i, i + m.end())
                i += m.end()
            else:
                i += 1  # a lifetime
        else:
            i += 1
    return "".join(out)


def expand_use(tree: str) -> list[str]:
    """`a::{b, c::{d, e}}` -> ['a::b', 'a::c::d', 'a::c::e'] (whitespace removed)."""
    tree = re.sub(r"\s+", "", tree)
    tree = re.sub(r"\bas\w+", "", tree)

    def split_top(s: str) -> list[str]:
        parts, depth, cur = [], 0, ""
        for ch in s:
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            if ch == "," and depth == 0:
                parts.append(cur)
                cur = ""
            else:
                cur += ch
        if cur:
            parts.append(cur)
        return parts

    def walk(prefix: str, s: str) -> list[str]:
        brace = s.find("{")
        if brace < 0:
            return [prefix + s] if s else []
        head, body = s[:brace], s[brace + 1:s.rfind("}")]
        result = []
        for part in split_top(body):
            result.extend(walk(prefix + head, part))
        return result

    return [p.replace("::self", "").rstrip(":") for p in walk("", tree)]


@dataclass
class Reference:
    source: tuple[str, ...]  # module that contains the reference
    target: tuple[str, ...]  # deepest known module the path names
    file: Path
    line: int


@dataclass
class Crate:
    name: str
    root: Path
    modules: set[tuple[str, ...]] = field(default_factory=lambda: {()})
    refs: list[Reference] = field(default_factory=list)


def file_module(src: Path, path: Path) -> tuple[str, ...]:
    rel = path.relative_to(src).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] in ("mod", "lib", "main") and (len(parts) > 1 or parts[-1] != "mod"):
        parts = parts[:-1]
    return tuple(parts)


def scan_crate(root: Path, no_tests: bool) -> Crate:
    src = root / "src"
    crate = Crate(root.name, root)
    files = sorted(p for p in src.rglob("*.rs"))
    test_files: set[tuple[str, ...]] = set()
    parsed = []
    for path in files:
        module = file_module(src, path)
        code = strip_code(path.read_text(encoding="utf-8"))
        parsed.append((path, module, code))
        crate.modules.add(module)
        for m in MOD_RE.finditer(code):
            if m.group(3) == ";" and m.group(1):
                test_files.add(module + (m.group(2),))

    for path, module, code in parsed:
        if no_tests and any(module[: len(t)] == t for t in test_files):
            continue
        # Inline `mod name { ... }` blocks: module path and test-ness per offset.
        spans = []  # (start, end, module path, is_test)
        for m in MOD_RE.finditer(code):
            if m.group(3) != "{":
                continue
            depth, j = 1, m.end()
            while j < len(code) and depth:
                depth += {"{": 1, "}": -1}.get(code[j], 0)
                j += 1
            spans.append((m.start(), j, m.group(2), bool(m.group(1))))

        def context(offset: int) -> tuple[tuple[str, ...], bool]:
            inner = [s for s in spans if s[0] <= offset < s[1]]
            inner.sort(key=lambda s: s[0])
            return module + tuple(s[2] for s in inner), any(s[3] for s in inner)

        for start, _, name, _ in spans:
            crate.modules.add(context(start)[0] + (name,))

        def add(raw: str, offset: int, relative_ok: bool) -> None:
            here, in_test = context(offset)
            if no_tests and in_test:
                return
            parts = [p for p in re.split(r"\s*::\s*", raw.strip()) if p and p != "*"]
            if not parts:
                return
            if parts[0] == "crate":
                base, rest = [], parts[1:]
            elif parts[0] in ("super", "self"):
                base = list(here)
                rest = parts
                while rest and rest[0] in ("super", "self"):
                    if rest[0] == "super":
                        base = base[:-1]
                    rest = rest[1:]
            elif relative_ok and tuple(here) + (parts[0],) in crate.modules:
                base, rest = list(here), parts
            else:
                return
            target = tuple(base)
            for p in rest:
                if target + (p,) in crate.modules:
                    target = target + (p,)
                else:
                    break
            line = code.count("\n", 0, offset) + 1
            crate.refs.append(Reference(here, target, path, line))

        use_spans = []
        for m in USE_RE.finditer(code):
            use_spans.append((m.start(), m.end()))
            for p in expand_use(m.group(1)):
                add(p, m.start(), relative_ok=True)
        for m in PATH_RE.finditer(code):
            if any(a <= m.start() < b for a, b in use_spans):
                continue
            add(m.group(1) + m.group(2), m.start(), relative_ok=False)
    return crate


def sccs(nodes: list[str], edges: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in nodes:
        if v not in index:
            visit(v)
    return out


def cycles(crate: Crate) -> list[str]:
    reports = []
    parents = sorted({m[:-1] for m in crate.modules if m})
    for parent in parents:
        depth = len(parent)
        children = sorted({m[depth] for m in crate.modules if len(m) > depth and m[:depth] == parent})
        evidence: dict[tuple[str, str], Reference] = {}
        edges: dict[str, set[str]] = {}
        for ref in crate.refs:
            if len(ref.source) <= depth or len(ref.target) <= depth:
                continue
            if ref.source[:depth] != parent or ref.target[:depth] != parent:
                continue
            a, b = ref.source[depth], ref.target[depth]
            if a != b:
                edges.setdefault(a, set()).add(b)
                evidence.setdefault((a, b), ref)
        for group in sccs(children, edges):
            where = "::".join(("crate",) + parent)
            lines = [f"{crate.name}: cycle among {where}::{{{', '.join(group)}}}"]
            for a in group:
                for b in group:
                    ref = evidence.get((a, b))
                    if ref:
                        rel = ref.file.relative_to(crate.root.parent)
                        lines.append(f"    {a} -> {b}  ({rel}:{ref.line})")
            reports.append("\n".join(lines))
    return reports


def workspace_crates(top: Path) -> list[Path]:
    found = []
    for manifest in sorted(top.glob("*/Cargo.toml")):
        src = manifest.parent / "src"
        if (src / "lib.rs").exists() or (src / "main.rs").exists():
            found.append(manifest.parent)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-tests", action="store_true", help="ignore #[cfg(test)] modules")
    parser.add_argument("crates", nargs="*", type=Path)
    args = parser.parse_args()
    roots = args.crates or workspace_crates(Path(__file__).resolve().parent.parent)
    if not roots:
        print("no crates found", file=sys.stderr)
        return 2
    found = []
    for root in roots:
        if not (root / "src").is_dir():
            print(f"{root}: no src/ directory", file=sys.stderr)
            return 2
        crate = scan_crate(root.resolve(), args.no_tests)
        reports = cycles(crate)
        found.extend(reports)
        status = f"{len(reports)} cycle(s)" if reports else "no cycles"
        print(f"{crate.name}: {len(crate.modules) - 1} modules, {status}")
    for report in found:
        print(report)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
