#!/usr/bin/env python3
"""Checks that the kit's source files import each other without a circle
and only downward, floor by floor, as lib.rs's module documentation lists.

Reads every file of the kit's module tree (kit/src, starting at lib.rs),
collects the paths each file names -- `use crate::...` in all its forms
(grouped `use crate::{a, b::{c, d}}`, `self`, renames, globs), `super::` and
`self::` paths, a parent's paths into its own child modules, and inline
`crate::x::y` paths in code -- and builds the graph "file A names an item of
file B". Then it checks two things and exits 1 naming every fault:
- no circle: files that import each other, directly or around a loop, are
  named with one import of each edge;
- floors: lib.rs's documentation lists the floors (lines `//! N. Title:
  `a`, `b``; a name stands for its file or its folder's files). Every file
  must stand on one, and an import from a lower floor to a higher one is
  named.
Otherwise it prints the files by layer (a file's layer is one more than the
highest layer it imports) and exits 0.

What counts is the code of the production module, under any combination of
the kit's production features:
- items behind a `#[cfg(...)]` that is false without `test` and without
  feature `fake` are skipped: `#[cfg(test)]` test modules and imports, and
  the test instruments behind feature `fake` (the FakeHost modules). They
  sit on top of everything and may import anything.
- items behind any other `cfg` (target, `higress`, `proxy-wasm`,
  `fuzzing`) count, as their code can be built.
- lib.rs is the crate root, not a node: its `pub use` re-exports are
  followed to the file that defines the name (`crate::Flow` counts as an
  import of the file `Flow` was re-exported from), and its macros are
  expanded in the plugin's crate.
- comments (doc comments too, so intra-doc links) and string contents do
  not count.

With --circles-only it checks any crate's files for circles alone (no
floors), from the root file --root names (default lib.rs), as
scripts/test.sh does for the load test's library.

Usage: python3 scripts/kit_layers.py [--src kit/src] [--quiet]
       python3 scripts/kit_layers.py --circles-only --src DIR [--root FILE] [--quiet]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from dataclasses import dataclass, field


def strip_comments_and_strings(text: str) -> str:
    """Blanks comments, and the characters of string literals other than
    letters, digits, `_` and `-` (so a `cfg(feature = "fake")` still reads),
    keeping every offset and newline in place."""
    out = list(text)
    i, n = 0, len(text)

    def blank(a: int, b: int, keep_words: bool = False) -> None:
        for k in range(a, min(b, n)):
            c = out[k]
            if c == "\n":
                continue
            if keep_words and (c.isalnum() or c in "_-"):
                continue
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
        elif (m := re.match(r'b?r(#*)"', text[i : i + 300])) and (
            i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")
        ):
            close = '"' + m.group(1)
            start = i + m.end()
            j = text.find(close, start)
            j = n if j < 0 else j + len(close)
            blank(start, j - len(close), keep_words=True)
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            blank(i + 1, j, keep_words=True)
            i = j + 1
        elif c == "'":
            # A char literal ('x', '\n', '\u{1F600}') or a lifetime ('a).
            if i + 1 < n and text[i + 1] == "\\":
                j = text.find("'", i + 2)
                j = n if j < 0 else j
                blank(i + 1, j)
                i = j + 1
            elif i + 2 < n and text[i + 2] == "'":
                blank(i + 1, i + 2)
                i += 3
            else:
                i += 1
        else:
            i += 1
    return "".join(out)


def balanced_end(text: str, open_at: int) -> int:
    """Index just past the bracket that closes the one at `open_at`."""
    pairs = {"(": ")", "[": "]", "{": "}"}
    stack = [pairs[text[open_at]]]
    j = open_at + 1
    while j < len(text) and stack:
        c = text[j]
        if c in pairs:
            stack.append(pairs[c])
        elif c in ")]}":
            stack.pop()
        j += 1
    return j


CFG_TOKEN = re.compile(r'\s*(all|any|not|[A-Za-z_][\w]*|"[^"]*"|\(|\)|,|=)')


def cfg_value(pred: str):
    """Evaluates a cfg predicate for a production build: `test` and feature
    `fake` are false, anything else is unknown (None)."""
    tokens = [t for t in CFG_TOKEN.findall(pred)]
    pos = 0

    def parse():
        nonlocal pos
        tok = tokens[pos]
        pos += 1
        if tok in ("all", "any", "not"):
            assert tokens[pos] == "("
            pos += 1
            args = []
            while tokens[pos] != ")":
                args.append(parse())
                if tokens[pos] == ",":
                    pos += 1
            pos += 1
            if tok == "not":
                return None if args[0] is None else not args[0]
            if tok == "all":
                if any(a is False for a in args):
                    return False
                return True if all(a is True for a in args) else None
            if any(a is True for a in args):
                return True
            return False if all(a is False for a in args) else None
        if pos < len(tokens) and tokens[pos] == "=":
            value = tokens[pos + 1].strip('"').strip()
            pos += 2
            if tok == "feature" and value == "fake":
                return False
            return None
        return False if tok == "test" else None

    return parse()


def drop_test_items(text: str) -> str:
    """Blanks every item behind a cfg that is false in production."""
    out = list(text)
    for m in re.finditer(r"#\s*\[\s*cfg\s*\(", text):
        open_paren = m.end() - 1
        pred_end = balanced_end(text, open_paren)
        if cfg_value(text[open_paren + 1 : pred_end - 1]) is not False:
            continue
        attr_end = text.find("]", pred_end) + 1
        j = attr_end
        # Further attributes of the same item.
        while True:
            while j < len(text) and text[j].isspace():
                j += 1
            if text.startswith("#", j):
                k = text.find("[", j)
                j = balanced_end(text, k)
            else:
                break
        # The item runs to a `;` outside brackets or to the `}` closing its
        # first top-level `{`.
        while j < len(text):
            c = text[j]
            if c == ";":
                j += 1
                break
            if c == "{":
                j = balanced_end(text, j)
                break
            if c in "([":
                j = balanced_end(text, j)
                continue
            j += 1
        for k in range(m.start(), j):
            if out[k] != "\n":
                out[k] = " "
    return "".join(out)


@dataclass
class Module:
    path: tuple[str, ...]  # from the crate root
    file: str  # relative to the source directory
    text: str = ""
    children: set[str] = field(default_factory=set)


def load_tree(src: str, root: str = "lib.rs") -> dict[tuple[str, ...], Module]:
    modules: dict[tuple[str, ...], Module] = {}

    def load(path: tuple[str, ...], rel: str, child_dir: str) -> None:
        with open(os.path.join(src, rel), encoding="utf-8") as f:
            raw = f.read()
        text = drop_test_items(strip_comments_and_strings(raw))
        module = Module(path, rel, text)
        modules[path] = module
        for m in re.finditer(r"(?m)^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", text):
            name = m.group(1)
            module.children.add(name)
            flat = os.path.join(child_dir, name + ".rs")
            nested = os.path.join(child_dir, name, "mod.rs")
            if os.path.exists(os.path.join(src, flat)):
                load(path + (name,), flat, os.path.join(child_dir, name))
            elif os.path.exists(os.path.join(src, nested)):
                load(path + (name,), nested, os.path.join(child_dir, name))
            else:
                sys.exit(f"kit_layers: no file for module {'::'.join(path + (name,))}")

    load((), root, "")
    return modules


TREE_TOKEN = re.compile(r"::|\{|\}|,|\*|\bas\b|[A-Za-z_]\w*")


def expand_use(tree: str) -> list[list[str]]:
    """The full paths one `use` tree names."""
    tokens = TREE_TOKEN.findall(tree)
    pos = 0

    def parse(prefix: list[str]) -> list[list[str]]:
        nonlocal pos
        path = list(prefix)
        while pos < len(tokens):
            tok = tokens[pos]
            if tok == "{":
                pos += 1
                found = []
                while tokens[pos] != "}":
                    found += parse(path)
                    if tokens[pos] == ",":
                        pos += 1
                pos += 1
                return found
            if tok == "::":
                pos += 1
                continue
            if tok in (",", "}"):
                break
            if tok == "as":
                pos += 2
                break
            pos += 1
            if tok == "*":
                break
            if tok == "self" and path:
                continue
            path.append(tok)
        return [path]

    return parse([])


def resolve(
    segments: list[str],
    here: tuple[str, ...],
    modules: dict[tuple[str, ...], Module],
    root_names: dict[str, list[str]],
    depth: int = 0,
):
    """The module a path lands in, or None for another crate or a local name."""
    if not segments:
        return None
    head, rest = segments[0], segments[1:]
    if head == "crate":
        base: tuple[str, ...] = ()
    elif head == "super":
        base = here[:-1]
        while rest and rest[0] == "super":
            base, rest = base[:-1], rest[1:]
    elif head == "self":
        base = here
    elif head in modules[here].children:
        base, rest = here + (head,), rest
    else:
        return None
    for seg in rest:
        if base + (seg,) in modules:
            base = base + (seg,)
        elif base == () and seg in root_names and depth < 8:
            return resolve(root_names[seg], (), modules, root_names, depth + 1)
        else:
            break
    return base


INLINE_PATH = re.compile(r"(?<![\w:$])(\w+)((?:\s*::\s*\w+)+)")


def build_graph(modules):
    root = modules[()]
    root_names: dict[str, list[str]] = {}
    for m in re.finditer(r"\bpub\s+use\s+([^;]*);", root.text):
        for path in expand_use(m.group(1)):
            if path and path[0] in root.children | {"crate"}:
                root_names[path[-1]] = ["crate"] + [p for p in path if p != "crate"]
    edges: dict[str, dict[str, tuple[int, str]]] = {}
    for path, module in modules.items():
        if path == ():
            continue
        here = edges.setdefault(module.file, {})
        text = module.text
        named: list[tuple[int, list[str]]] = []
        uses = list(re.finditer(r"\buse\s+([^;]*);", text))
        for m in uses:
            for segments in expand_use(m.group(1)):
                named.append((m.start(), segments))
        blanked = list(text)
        for m in uses:
            for k in range(m.start(), m.end()):
                if blanked[k] != "\n":
                    blanked[k] = " "
        code = "".join(blanked)
        for m in INLINE_PATH.finditer(code):
            segments = [m.group(1)] + re.findall(r"\w+", m.group(2))
            named.append((m.start(), segments))
        for offset, segments in named:
            target = resolve(segments, path, modules, root_names)
            if target is None or target == path or target == ():
                continue
            to = modules[target].file
            if to not in here:
                line = text.count("\n", 0, offset) + 1
                here[to] = (line, "::".join(segments))
    return edges


def circles(edges) -> list[list[str]]:
    """Strongly connected components of more than one file (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(10000)

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def layers(edges) -> dict[str, int]:
    level: dict[str, int] = {}

    def of(v: str) -> int:
        if v not in level:
            level[v] = 0
            level[v] = 1 + max((of(w) for w in edges.get(v, {})), default=-1)
        return level[v]

    for v in edges:
        of(v)
    return level


FLOOR_LINE = re.compile(r"^//!\s*(\d+)\.\s*([^:]*):\s*(.*)$")


def floors(src: str, files) -> tuple[dict[str, tuple[int, str]], list[str]]:
    """Each file's floor from lib.rs's list, and the faults of the list."""
    with open(os.path.join(src, "lib.rs"), encoding="utf-8") as f:
        lines = f.read().splitlines()
    named: dict[str, tuple[int, str]] = {}
    faults: list[str] = []
    for line in lines:
        m = FLOOR_LINE.match(line)
        if not m:
            continue
        number, title = int(m.group(1)), m.group(2).strip()
        for name in re.findall(r"`([\w/]+)`", m.group(3)):
            if name in named:
                faults.append(f"lib.rs lists `{name}` on two floors")
            named[name] = (number, title)
    if not named:
        faults.append("lib.rs's documentation lists no floors (`//! 1. Title: `a`, `b``)")
    placed: dict[str, tuple[int, str]] = {}
    for file in files:
        stem = file.removesuffix(".rs").removesuffix("/mod")
        parts = stem.split("/")
        for k in range(len(parts), 0, -1):
            key = "/".join(parts[:k])
            if key in named:
                placed[file] = named[key]
                break
        else:
            faults.append(f"{file} stands on no floor: add it to lib.rs's list")
    return placed, faults


def main() -> int:
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--src", default=os.path.join(here, "..", "kit", "src"))
    parser.add_argument("--quiet", action="store_true", help="print only circles")
    parser.add_argument(
        "--circles-only", action="store_true", help="check for circles only, no floors"
    )
    parser.add_argument("--root", default="lib.rs", help="the crate's root file")
    args = parser.parse_args()
    modules = load_tree(args.src, args.root)
    edges = build_graph(modules)
    found = circles(edges)
    if args.circles_only:
        placed, faults = {}, []
    else:
        placed, faults = floors(args.src, edges)
    for v in sorted(edges):
        for w, (line, named) in sorted(edges[v].items()):
            if v in placed and w in placed and placed[w][0] > placed[v][0]:
                faults.append(
                    f"{v}:{line} (floor {placed[v][0]}, {placed[v][1]}) imports {w} "
                    f"(floor {placed[w][0]}, {placed[w][1]}): {named}"
                )
    for fault in faults:
        print(f"kit_layers: FAIL: {fault}")
    if found:
        for component in found:
            members = set(component)
            print(f"kit_layers: FAIL: {len(component)} files import each other in a circle: "
                  + ", ".join(component))
            for v in component:
                for w, (line, named) in sorted(edges[v].items()):
                    if w in members:
                        print(f"  {v}:{line} -> {w} ({named})")
        return 1
    if faults:
        return 1
    if not args.quiet:
        level = layers(edges)
        for n in range(max(level.values(), default=-1) + 1):
            files = sorted(v for v in level if level[v] == n)
            print(f"layer {n}: " + " ".join(f.removesuffix(".rs") for f in files))
    if args.circles_only:
        print(f"kit_layers: {len(edges)} files of {args.src}, no import circle")
        return 0
    print(
        f"kit_layers: {len(edges)} files of kit/src on "
        f"{len({floor for floor, _ in placed.values()})} floors, "
        "no import circle, none upward"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
