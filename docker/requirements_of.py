"""Print the requirements of pyproject.toml's base dependencies plus the named extras, one a line.

Why: a Dockerfile installs these in a layer of their own, before the project's source is copied,
so that a source change rebuilds only the last, small layer (`pip install --no-deps .`). An extra
that names the project itself (`ranking-gateway[build]`) is expanded in place.

    python3 docker/requirements_of.py pyproject.toml embedded build
"""

from __future__ import annotations

import re
import sys
import tomllib


def requirements(project: dict, extras: list[str]) -> list[str]:
    """The base dependencies and every requirement the extras bring, in order, without repeats."""
    name = project["name"]
    optional = project.get("optional-dependencies", {})
    seen_extras: set[str] = set()
    out: list[str] = list(project.get("dependencies", []))

    def add(extra: str) -> None:
        if extra in seen_extras:
            return
        if extra not in optional:
            raise SystemExit(f"pyproject.toml has no extra {extra!r} (it has: {', '.join(sorted(optional))})")
        seen_extras.add(extra)
        for requirement in optional[extra]:
            self_reference = re.fullmatch(rf"{re.escape(name)}\[([^\]]+)\]", requirement.replace(" ", ""))
            if self_reference:
                for inner in self_reference.group(1).split(","):
                    add(inner)
            else:
                out.append(requirement)

    for extra in extras:
        add(extra)
    return list(dict.fromkeys(out))


def main(argv: list[str]) -> int:
    if not argv:
        raise SystemExit("usage: requirements_of.py PYPROJECT [EXTRA ...]")
    with open(argv[0], "rb") as fh:
        project = tomllib.load(fh)["project"]
    print("\n".join(requirements(project, [e for e in argv[1:] if e])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
