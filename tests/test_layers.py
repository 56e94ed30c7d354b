"""The package's import graph, read from its source: no cycle, and no import against the layers.

ARCHITECTURE.md: cli -> stages/report/plan -> engine -> store -> learn/md ->
analysis/systems/parallel, never back. The graph is built with ``ast`` from every module
of ``glasscam_mpi`` (imports inside functions count: they run too; imports under ``if
TYPE_CHECKING:`` do not), one node per module, an edge per imported module (``from
package import name`` is an edge to ``package.name`` where that is a module, else to the
package's ``__init__``). A package's ``__init__`` running before its submodules is not an
edge: it is how Python imports, not a dependency of the submodule.

Rules:

1. no import cycle (strongly connected components of more than one module);
2. no module imports a module of a higher layer (:data:`LAYERS`);
3. no module imports a private module (``_name``) from outside the package holding it;
4. a stage module imports no other stage (the engine, and the analyze stage's own
   ``analyze_*`` modules, excepted) and the report imports no stage: what two stages
   share lives below them.

Known exceptions are listed in :data:`EXCEPTIONS` with the reason; the test also fails when
one of them is no longer needed, so the list can only shrink.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "glasscam_mpi"
SOURCE = Path(__file__).resolve().parents[1] / PACKAGE

# (layer name, module prefixes), highest first; a module belongs to the entry with its
# longest matching prefix. Same-layer imports are allowed (but not cycles).
LAYERS = (
    ("cli", ("cli", "jobs", "info", "sweep", "sweep_table", "slurm")),
    ("stages/report/plan", ("stages", "report", "plan", "export")),
    ("engine", ("stages.engine", "stages.declare", "stages.rounds")),
    ("store", ("store", "rundir", "importer", "dims", "runview")),
    ("learn/md", ("learn", "md", "env")),
    ("analysis/systems/parallel", ("analysis", "systems", "parallel", "config", "reference",
                                   "walltime", "_native", "presets", "jsonio", "mixture", "")),
)

# (importer, imported, why it is still there). Each must still occur: remove it when fixed.
EXCEPTIONS: dict = {}

ANALYZE_FAMILY = "glasscam_mpi.stages.analyze"
# the engine's modules inside stages/: what every stage is built on, not a stage
ENGINE = ("engine", "declare", "rounds")


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(SOURCE.rglob("*.py")):
        parts = list(path.relative_to(SOURCE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, name: str, is_package: bool, modules: dict) -> set[str]:
    """The package modules ``name`` imports (anywhere but under TYPE_CHECKING)."""
    base = name.split(".") if is_package else name.split(".")[:-1]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                # "import a.b.c" binds a and runs a, a.b, a.b.c: the deepest is the edge
                for k in range(len(parts), 0, -1):
                    if ".".join(parts[:k]) in modules:
                        found.add(".".join(parts[:k]))
                        break
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[:len(base) - (node.level - 1)]
                target = ".".join(anchor + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] == PACKAGE:
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    found.add(sub if sub in modules else target)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    found.discard(name)
    return {m for m in found if m in modules}


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(ast.parse(path.read_text(), str(path)), name,
                           path.name == "__init__.py", modules)
            for name, path in modules.items()}


def layer_of(module: str) -> int:
    """Index into LAYERS (0 is the top) of a module of the package."""
    rel = module[len(PACKAGE) + 1:] if module != PACKAGE else ""
    best, best_len = None, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (prefix == "" or rel == prefix or rel.startswith(prefix + ".")) \
                    and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    return best


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
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
                    if len(comp) > 1:
                        found.append(sorted(comp))
    return found


def violations(graph: dict[str, set[str]]) -> dict[tuple[str, str], str]:
    """(importer, imported) -> which rule it breaks (rules 2-4 of the module doc)."""
    out = {}
    for a in sorted(graph):
        for b in sorted(graph[a]):
            if layer_of(b) < layer_of(a):
                out[a, b] = (f"layer {LAYERS[layer_of(a)][0]!r} imports layer "
                             f"{LAYERS[layer_of(b)][0]!r} above it")
                continue
            private = [p for p in b.split(".")[1:] if p.startswith("_")]
            if private:
                holder = b[:b.index("." + private[0])]
                if not (a == holder or a.startswith(holder + ".")):
                    out[a, b] = f"imports the private module {b} from outside {holder}"
                    continue
            stage = f"{PACKAGE}.stages."
            engine = {f"{stage}{m}" for m in ENGINE}
            a_stage = a.startswith(stage) and a not in engine
            b_stage = b.startswith(stage) and b not in engine
            family = a.startswith(ANALYZE_FAMILY) and b.startswith(ANALYZE_FAMILY)
            if a_stage and b_stage and not family:
                out[a, b] = "a stage imports another stage (sideways)"
            elif a.startswith(f"{PACKAGE}.report") and b_stage:
                out[a, b] = "the report imports a stage's internals"
    return out


@pytest.fixture(scope="module")
def graph():
    return import_graph()


def test_every_module_has_a_layer(graph):
    assert len(graph) > 60                    # the walk found the package
    assert [m for m in graph if layer_of(m) is None] == []


def test_no_import_cycle(graph):
    assert cycles(graph) == []


def test_no_import_against_the_layers_beyond_the_known_exceptions(graph):
    found = violations(graph)
    new = {edge: why for edge, why in found.items() if edge not in EXCEPTIONS}
    assert new == {}, "imports against the layers (move the code down, or the import up)"
    gone = sorted(set(EXCEPTIONS) - set(found))
    assert gone == [], f"fixed: remove {gone} from EXCEPTIONS"


def test_the_checker_sees_what_it_must_refuse():
    """The rules catch what they are for, on a made-up graph (so a test that passes is not
    a checker that sees nothing): a cycle through a function-level import, an upward
    import, a private module used from outside, sideways stages, a report on a stage."""
    modules = {f"{PACKAGE}.{m}": None for m in (
        "analysis.coarse", "analysis._hidden", "learn.grid", "stages.engine", "stages.a",
        "stages.b", "stages.analyze", "stages.analyze_summary", "report.data", "cli")}
    src = {
        "analysis.coarse": "def f():\n    from glasscam_mpi.learn import grid\n",
        "learn.grid": "from glasscam_mpi.analysis.coarse import f\n"
                      "from glasscam_mpi.analysis._hidden import g\n",
        "stages.a": "from glasscam_mpi.stages.b import h\nfrom glasscam_mpi.stages import engine\n",
        "stages.analyze": "from glasscam_mpi.stages.analyze_summary import s\n",
        "report.data": "import glasscam_mpi.stages.a\n",
        "cli": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
               "    from glasscam_mpi.stages import a\n",
    }
    g = {m: _imports(ast.parse(src.get(m[len(PACKAGE) + 1:], "")), m, False, modules)
         for m in modules}
    assert cycles(g) == [[f"{PACKAGE}.analysis.coarse", f"{PACKAGE}.learn.grid"]]
    found = violations(g)
    P = PACKAGE
    assert set(found) == {(f"{P}.analysis.coarse", f"{P}.learn.grid"),
                          (f"{P}.learn.grid", f"{P}.analysis._hidden"),
                          (f"{P}.stages.a", f"{P}.stages.b"),
                          (f"{P}.report.data", f"{P}.stages.a")}
    assert g[f"{P}.cli"] == set()             # TYPE_CHECKING imports do not count
