"""The stage declarations (glasscam_mpi/stages/declare.py) and the registry: the workflow
order is derived from ``needs``, inconsistent declarations are refused by name, and no
module that the declarations serve (slurm, jobs, plan, info, the CLI) names a stage."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

import glasscam_mpi
from glasscam_mpi.stages import COMMANDS, JOBS, STAGES
from glasscam_mpi.stages.declare import Flow, Input, Runs, order

PACKAGE = Path(glasscam_mpi.__file__).parent


@dataclass(frozen=True)
class Decl:
    name: str
    flow: Flow


def test_order_is_topological_with_ties_in_listed_order():
    a, b = Decl("a", Flow()), Decl("b", Flow(needs=("c",)))
    c, d = Decl("c", Flow(needs=("a",))), Decl("d", Flow())
    assert [s.name for s in order([b, c, a, d])] == ["a", "c", "b", "d"]
    assert [s.name for s in order([d, a, c, b])] == ["d", "a", "c", "b"]


@pytest.mark.parametrize("stages, message", [
    ([Decl("a", Flow(needs=("nope",)))], "stage 'a' needs 'nope', which is not a stage"),
    ([Decl("a", Flow(needs=("b",))), Decl("b", Flow(needs=("a",)))], "form a cycle"),
    ([Decl("a", Flow()), Decl("b", Flow(inputs=(Input("a"),)))],
     "stage 'b' opens 'a''s file but does not need it"),
])
def test_inconsistent_declarations_are_refused_by_name(stages, message):
    with pytest.raises(ValueError, match=message):
        order(stages)


def test_runs_kind_is_cpu_or_gpu():
    with pytest.raises(ValueError, match="Runs.kind = 'tpu': allowed: cpu, gpu"):
        Runs("tpu")


def test_the_registry_is_the_paper_pipeline_in_order():
    assert list(STAGES) == ["prepare", "train", "gradcam", "indicators", "propensity",
                            "analyze", "report"]
    for name, s in STAGES.items():  # every stage is after what it needs and opens
        before = list(STAGES)[:list(STAGES).index(name)]
        assert set(s.flow.needs) <= set(before), name
        assert s.flow.cost is not None, name  # plan prices every stage
    # GPUs and walltime continuation come from the declarations (sweep is a command)
    assert {n for n, r in JOBS.items() if r.kind == "gpu"} == {"train", "gradcam", "sweep"}
    assert {n for n, r in JOBS.items() if r.continues} == {
        "prepare", "gradcam", "indicators", "propensity", "analyze"}
    assert set(COMMANDS) == {"sweep"} and not set(COMMANDS) & set(STAGES)


def _string_constants(path: Path) -> set[str]:
    """The string literals of a module, docstrings left out."""
    tree = ast.parse(path.read_text())
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
            and n.body and isinstance(n.body[0], ast.Expr)
            and isinstance(n.body[0].value, ast.Constant)}
    return {n.value for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs}


@pytest.mark.parametrize("module", ["slurm.py", "jobs.py", "cli.py", "info.py",
                                    *(f"plan/{p.name}" for p in (PACKAGE / "plan").glob("*.py"))])
def test_only_the_registry_names_stages(module):
    named = _string_constants(PACKAGE / module) & set(STAGES)
    assert not named, f"{module} names the stage(s) {sorted(named)}: read the declarations"
