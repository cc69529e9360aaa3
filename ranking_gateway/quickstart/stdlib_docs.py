"""Harvesting documentation entries from the installed standard library, without importing it.

Pure-Python modules are parsed with `ast` (importing `antigravity`, `this` or `tkinter` has side
effects, and some modules are platform-specific); C builtins (`math`, `itertools`, ...) are
imported, which is side-effect free. The walk is sorted, so the output depends only on the
Python version.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import sys
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SKIP_TOP = {
    "test", "idlelib", "tkinter", "turtledemo", "lib2to3", "ensurepip", "pydoc_data", "site-packages",
    "venv", "distutils", "__phello__", "antigravity", "this", "turtle",
}
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z`'\"(])")


@dataclass(frozen=True, slots=True)
class DocEntry:
    name: str  # qualified name, e.g. "json.dumps"
    kind: str  # module | class | function
    docstring: str


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def module_files(root: Path) -> Iterator[tuple[str, Path]]:
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        parts = list(rel.with_suffix("").parts)
        if parts[0] in SKIP_TOP or any(p.startswith("_") and p != "__init__" for p in parts) or "test" in parts or "tests" in parts:
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts and all(p.isidentifier() for p in parts):
            yield ".".join(parts), path


def entries_from_source(module: str, path: Path) -> Iterator[DocEntry]:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return
    doc = ast.get_docstring(tree)
    if doc:
        yield DocEntry(module, "module", doc)
    for node in tree.body:
        yield from _node_entries(module, node)


def _node_entries(prefix: str, node: ast.AST) -> Iterator[DocEntry]:
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) or node.name.startswith("_"):
        return
    name = f"{prefix}.{node.name}"
    doc = ast.get_docstring(node)
    if doc:
        yield DocEntry(name, "class" if isinstance(node, ast.ClassDef) else "function", doc)
    if isinstance(node, ast.ClassDef):
        for child in node.body:
            yield from _node_entries(name, child)


def entries_from_builtins() -> Iterator[DocEntry]:
    for module in sorted(sys.builtin_module_names):
        if module.startswith("_"):
            continue
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        if mod.__doc__:
            yield DocEntry(module, "module", inspect.cleandoc(mod.__doc__))
        for attr in sorted(vars(mod)):
            obj = getattr(mod, attr)
            if attr.startswith("_") or not (inspect.isbuiltin(obj) or inspect.isclass(obj)):
                continue
            doc = inspect.getdoc(obj)
            if doc and getattr(obj, "__module__", module) == module:
                yield DocEntry(f"{module}.{attr}", "class" if inspect.isclass(obj) else "function", doc)


def all_entries() -> list[DocEntry]:
    out = list(entries_from_builtins())
    for module, path in module_files(stdlib_root()):
        out.extend(entries_from_source(module, path))
    return out


def split_summary(docstring: str) -> tuple[str, str] | None:
    """(summary sentence, the rest), or None when there is no usable pair.

    The summary is the first paragraph's first sentence; call signatures that C builtins put on
    their first line (`dumps(obj, ...)`) are skipped.
    """
    text = docstring.strip()
    lines = text.splitlines()
    if lines and re.match(r"^[\w.]+\(.*\)(\s*->.*)?$", lines[0].strip()):
        text = "\n".join(lines[1:]).strip()
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text) if p.strip()]
    if not paragraphs:
        return None
    first = paragraphs[0]
    parts = SENTENCE_END.split(first, maxsplit=1)
    summary = parts[0].strip()
    rest = " ".join(([parts[1]] if len(parts) > 1 else []) + paragraphs[1:]).strip()
    return (summary, rest) if summary and rest else None
