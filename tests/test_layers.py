"""The three floors of the codebase, checked on the import statements themselves.

    ground floor   rlhf.core                                   imports no domain, nothing above
    domains        annotation, reward, policy, evals           each imports rlhf.core and itself only
    top floor      rlhf.pipeline, then rlhf.cli and rlhf.stage the pipeline imports no command

Every import counts, at module level or inside a function (a lazy import still ties the
modules together once it runs), `if TYPE_CHECKING:` ones too, relative ones resolved, and
`__import__("x")` / `importlib.import_module("x")` with a literal name. There are no import
cycles among the modules either.

    python -m tests.test_layers [ROOT]    # prints the violations (exit 1) or "layering holds"
"""

from __future__ import annotations

import ast
import shutil
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest

# ======================================== the contract ========================================
PACKAGES = ("rlhf", "annotation", "reward", "policy", "evals")
# Generated alembic revisions: frozen snapshots that import only sqlalchemy and alembic.
SKIP = ("rlhf/core/migrations/versions",)

GROUND = ("rlhf.core",)
DOMAINS = ("annotation", "reward", "policy", "evals")
TOP = ("rlhf.pipeline", "rlhf.cli", "rlhf.stage")
# Package markers in no floor (`rlhf`: its __version__ only). Every import of rlhf.core runs
# rlhf/__init__.py, so a marker imports nothing first-party; any other module has to be placed.
MARKERS = ("rlhf",)

# (whose modules, may not import any module of these, why); a module belongs to "x" when it
# is x or below it.
RULES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("rlhf.core", DOMAINS + TOP, "the ground floor imports a domain or the top floor"),
    *((d, tuple(o for o in DOMAINS if o != d), "a domain imports another domain") for d in DOMAINS),
    *((d, TOP, "a domain imports the top floor") for d in DOMAINS),
    ("rlhf.pipeline", ("rlhf.cli", "rlhf.stage"), "the pipeline imports a command"),
)
MARKER_RULE = "a package marker imports code"
# ==============================================================================================


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    where: str  # path:line


@dataclass
class Report:
    floors: list[tuple[str, str, str, list[str]]] = field(default_factory=list)  # importer, imported, why, where
    cycles: list[list[str]] = field(default_factory=list)  # a -> b -> ... -> a
    unplaced: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.floors or self.cycles or self.unplaced)

    def lines(self) -> list[str]:
        out = [f"{a} -> {b}    {why} ({', '.join(where)})" for a, b, why, where in self.floors]
        out += [f"cycle: {' -> '.join(c)}" for c in self.cycles]
        out += [f"{m}: in no floor; place it in the contract at the top of tests/test_layers.py" for m in self.unplaced]
        return out


def within(module: str, unit: str) -> bool:
    return module == unit or module.startswith(unit + ".")


def module_files(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the first-party packages under `root`."""
    out: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            rel = path.relative_to(root)
            if any(rel.as_posix().startswith(s + "/") for s in SKIP):
                continue
            parts = list(rel.with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _first_party(name: str) -> bool:
    return name.split(".")[0] in PACKAGES


def _literal_import(node: ast.Call) -> str | None:
    """The module named by `__import__("x", ...)` or `importlib.import_module("x")`."""
    f = node.func
    called = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
    if called not in ("__import__", "import_module") or not node.args:
        return None
    arg = node.args[0]
    return arg.value if isinstance(arg, ast.Constant) and isinstance(arg.value, str) else None


def read_imports(module: str, path: Path, modules: set[str], root: Path) -> list[Import]:
    """The first-party modules `module` imports, wherever the statement sits in the file.

    `from a import b` names the module a.b when there is one, else a (b is one of a's names).
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    rel = path.relative_to(root).as_posix()
    out: list[Import] = []
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base_parts = parts[: len(parts) - (node.level - 1)] if node.level > 1 else parts
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        elif isinstance(node, ast.Call) and (name := _literal_import(node)):
            targets = [name]
        out += [Import(module, t, f"{rel}:{node.lineno}") for t in dict.fromkeys(targets) if _first_party(t)]
    return out


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One shortest cycle per strongly connected component (Tarjan), through its first module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0

    for start in sorted(graph):
        if start in index:
            continue
        # Iterative: a recursive Tarjan would hit Python's recursion limit on a long import chain.
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1 or v in graph[v]:
                        components.append(sorted(comp))

    cycles = []
    for comp in sorted(components):
        members, first = set(comp), comp[0]
        # Breadth first from `first` inside the component: the shortest way back to it.
        parent: dict[str, str] = {}
        frontier, seen, found = [first], {first}, None
        while frontier and found is None:
            nxt = []
            for v in frontier:
                for w in sorted(graph[v] & members):
                    if w == first:
                        found = v
                        break
                    if w not in seen:
                        seen.add(w)
                        parent[w] = v
                        nxt.append(w)
                if found is not None:
                    break
            frontier = nxt
        path = [found]
        while path[-1] != first:
            path.append(parent[path[-1]])
        cycles.append([*reversed(path), first])
    return cycles


def check_layers(root: Path) -> Report:
    """The contract's violations in the source tree at `root` (a checkout, or a copy of one)."""
    root = Path(root)
    files = module_files(root)
    modules = set(files)
    imports = [imp for m, p in files.items() for imp in read_imports(m, p, modules, root)]
    report = Report()

    placed = GROUND + DOMAINS + TOP
    report.unplaced = [m for m in sorted(modules) if m not in MARKERS and not any(within(m, u) for u in placed)]

    found: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for imp in imports:
        if imp.importer in MARKERS:
            found[(imp.importer, imp.imported, MARKER_RULE)].append(imp.where)
        for unit, banned, why in RULES:
            if within(imp.importer, unit) and any(within(imp.imported, b) for b in banned):
                found[(imp.importer, imp.imported, why)].append(imp.where)
    report.floors = [(a, b, why, where) for (a, b, why), where in sorted(found.items())]

    graph: dict[str, set[str]] = {m: set() for m in modules}
    for imp in imports:
        # A name no module has (a stale import) fails at import time; it ties no two modules together.
        if imp.imported in modules:
            graph[imp.importer].add(imp.imported)
    report.cycles = _cycles(graph)
    return report


# ========================================== tests ==========================================
REPO = Path(__file__).resolve().parent.parent


def test_the_codebase_keeps_its_floors_and_has_no_import_cycles():
    report = check_layers(REPO)
    assert report.ok, "layering broken:\n" + "\n".join(report.lines())


def test_the_checker_reads_every_module_but_the_alembic_revisions():
    files = module_files(REPO)
    assert {"rlhf", "rlhf.core.store", "rlhf.pipeline.stages.policy", "rlhf.stage", "policy.backends",
            "evals.gates"} <= set(files)
    assert "rlhf.core.migrations.env" in files
    assert not any(m.startswith("rlhf.core.migrations.versions") for m in files)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the first-party sources (.py files only) to plant violations in."""
    for package in PACKAGES:
        for src in (REPO / package).rglob("*.py"):
            dst = tmp_path / src.relative_to(REPO)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
    assert check_layers(tmp_path).ok  # the copy holds, so what fails below is what was planted
    return tmp_path


def append(path: Path, text: str) -> None:
    path.write_text(path.read_text(encoding="utf-8") + "\n" + text + "\n", encoding="utf-8")


def test_a_domain_importing_another_domain_is_reported(tree: Path):
    append(tree / "reward/pairs.py", "import policy.config")
    report = check_layers(tree)
    assert [(a, b, why) for a, b, why, _ in report.floors] == [
        ("reward.pairs", "policy.config", "a domain imports another domain")
    ]
    assert report.floors[0][3] == [f"reward/pairs.py:{len((tree / 'reward/pairs.py').read_text().splitlines())}"]
    assert not report.cycles and not report.unplaced
    assert report.lines()[0].startswith("reward.pairs -> policy.config ")


def test_the_ground_floor_importing_upward_lazily_is_reported(tree: Path):
    # Inside a function and through `from X import name`: the module X is what it imports.
    append(tree / "rlhf/core/store.py", "def _later():\n    from rlhf.pipeline.config import Config\n    return Config")
    append(tree / "rlhf/pipeline/common.py", "def _cli():\n    from rlhf.cli import status\n    return status")
    assert [(a, b) for a, b, _, _ in check_layers(tree).floors] == [
        ("rlhf.core.store", "rlhf.pipeline.config"),
        ("rlhf.pipeline.common", "rlhf.cli.status"),
    ]


def test_an_import_cycle_is_reported_through_relative_and_local_imports(tree: Path):
    # failpoint and types import nothing first-party, so the cycle is exactly the two planted edges.
    append(tree / "rlhf/core/failpoint.py", "from . import types")
    append(tree / "rlhf/core/types.py", "def _fp():\n    from rlhf.core import failpoint\n    return failpoint")
    report = check_layers(tree)
    assert report.cycles == [["rlhf.core.failpoint", "rlhf.core.types", "rlhf.core.failpoint"]]
    assert not report.floors and not report.unplaced
    assert report.lines() == ["cycle: rlhf.core.failpoint -> rlhf.core.types -> rlhf.core.failpoint"]


def test_imports_by_name_and_in_the_package_marker_are_reported(tree: Path):
    append(tree / "evals/suites.py", 'import importlib\nCLI = importlib.import_module("rlhf.cli.main")')
    append(tree / "rlhf/__init__.py", 'MAIN = __import__("rlhf.pipeline.round", fromlist=["run_round"])')
    assert [(a, b, why) for a, b, why, _ in check_layers(tree).floors] == [
        ("evals.suites", "rlhf.cli.main", "a domain imports the top floor"),
        ("rlhf", "rlhf.pipeline.round", MARKER_RULE),
    ]


def test_a_module_outside_every_floor_is_reported(tree: Path):
    (tree / "rlhf/helpers.py").write_text("X = 1\n")
    assert check_layers(tree).unplaced == ["rlhf.helpers"]


def main(argv: list[str]) -> int:
    root = Path(argv[0]) if argv else REPO
    if not module_files(root):
        print(f"no modules of {', '.join(PACKAGES)} under {root}: nothing to check")
        return 2
    report = check_layers(root)
    if report.ok:
        print(f"layering holds ({len(module_files(root))} modules under {root})")
        return 0
    print("\n".join(report.lines()))
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
