"""The paper's tables for one run, beside the paper's numbers (Markdown and CSV).

Each builder takes a :class:`~glasscam_mpi.report.data.RunData` and returns a
:class:`Table`: cells are numbers (NaN where there is none) or text, so the CSV keeps full
precision and the Markdown rounds. Every table says which form (X or 1 - X) of each
indicator its numbers are for.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field

import numpy as np

from glasscam_mpi.reference import PAPER_TARGETS
from glasscam_mpi.report.data import SYMBOLS, RunData, form_label

NA_FORM = "Form: not applicable (no structural indicator in this table)."


@dataclass
class Table:
    key: str                       # file stem: report/tables/<key>.md|csv
    title: str
    columns: list[str]
    rows: list[list] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        """A GitHub-flavoured Markdown table with its title and notes."""
        lines = [f"### {self.title}", ""]
        if self.rows:
            lines += ["| " + " | ".join(self.columns) + " |",
                      "|" + "|".join("---" for _ in self.columns) + "|"]
            lines += ["| " + " | ".join(fmt(c).replace("|", "\\|") for c in row) + " |"
                      for row in self.rows]
            lines.append("")
        lines += [f"- {n}" for n in self.notes]
        return "\n".join(lines) + "\n"

    def csv(self) -> str:
        """The columns and rows, numbers at full precision, NaN as an empty cell."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(self.columns)
        for row in self.rows:
            w.writerow([_csv_cell(c) for c in row])
        return buf.getvalue()


def fmt(v) -> str:
    """A cell for people: 4 significant digits, '—' for a missing number."""
    if v is None:
        return "—"
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return "—" if not math.isfinite(v) else f"{float(v):.4g}"
    return str(v)


def _csv_cell(v):
    if v is None:
        return ""
    if isinstance(v, (float, np.floating)):
        return repr(float(v)) if math.isfinite(v) else ""
    if isinstance(v, (np.integer,)):
        return int(v)
    return v


def _nan(v) -> float:
    return float("nan") if v is None else float(v)


# -- the run's scale ---------------------------------------------------------------------------
def scale(d: RunData) -> Table:
    s, p = d.scale, d.paper
    t = Table("scale", "Scale of this run beside the paper's",
              ["quantity", "this run", "paper"])
    ok, tot = s.split_ok, s.split_total
    temps = ", ".join(f"{T:.4g}" for T in s.temperatures)
    if math.isfinite(s.T_star_used) and s.T_star_used > 0:
        temps += " (= " + ", ".join(f"{T / s.T_star_used:.3g}" for T in s.temperatures) + " T*)"
    t.rows = [
        ["system", f"{s.system} ({s.dim}D)", f"{s.system} (2D)" if p else "not in the paper"],
        ["N (particles)", s.n_particles, 2000],
        ["cooling runs ok / total", f"{s.n_ok} / {s.n_runs}", "5000"],
        ["split train / validation / test (ok of total)",
         " / ".join(f"{a} of {b}" for a, b in zip(ok, tot)), "4000 / 400 / 600"],
        ["cooling rate", s.cooling_rate, 8.33e-5],
        ["T* estimated from the cooling curves U(T)", s.T_star_estimate, None],
        [f"T* used for the replica temperatures ({s.T_star_source})", s.T_star_used, None],
        ["T* of the paper", None, _nan(s.T_star_paper)],
        ["replica temperatures", temps, "T* to about 1.5 T*"],
        ["propensity configurations (n_configs)", s.n_configs, 1],
        ["replicas per ensemble (n_replicas)", s.n_replicas, "30 (100 for Table 4)"],
        ["delta targets", ", ".join(f"{x:g}" for x in s.delta_targets), "0.3, 1, 3"],
    ]
    if s.T_star_why:
        t.notes.append(f"No T* estimate from the cooling curves: {s.T_star_why}.")
    t.notes.append(f"Units: length {s.units[0]}, energy {s.units[1]}, temperature "
                   f"{s.units[1]}/k_B (reduced Lennard-Jones units, paper Table 1).")
    return t


def warning(d: RunData) -> str | None:
    """The demo-scale warning, or None at the paper's scale."""
    diff = d.scale.differences()
    if not diff:
        return None
    return ("NOT THE PAPER'S SCALE: " + "; ".join(diff) + ". The numbers below describe this "
            "run only; compare them with the paper's only as a check of the method.")


# -- Table 2 -----------------------------------------------------------------------------------
def table2(d: RunData) -> Table:
    name, p = d.scale.system, d.paper
    t = Table("table2", "Table 2: test accuracy of the CNN",
              ["", "glass", "liquid", "test samples (glass / liquid)"])
    if d.train is not None:
        acc, n = d.train["test_accuracy"], d.train["test_counts"]
        t.rows.append([f"{name} (this run)", float(acc[0]), float(acc[1]), f"{n[0]} / {n[1]}"])
        t.notes.append(f"Best model of epoch {d.train['best_epoch']} of {d.train['epochs']} "
                       f"(backend {d.train['backend']}); source train.h5 test_accuracy.")
    else:
        t.notes.append("No train.h5: the CNN stages (train, gradcam) were not run.")
    if p:
        t.rows.append([f"{name} (paper)", p["table2"][0], p["table2"][1], "600 / 600"])
    t.notes.append(NA_FORM)
    return t


# -- Table 3 -----------------------------------------------------------------------------------
def _paper_at_target(d: RunData, target: float, values) -> float:
    for tp, v in zip(PAPER_TARGETS, values):
        if math.isclose(tp, target):
            return float(v)
    return float("nan")


def table3(d: RunData) -> Table:
    S, p = d.S, d.paper
    pxi = p["xi"] if p else None
    t = Table("table3", "Table 3: coarse-graining lengths ξ",
              ["quantity", "used for", "form", "this run", "this run on the ξ grid", "paper",
               "note"])
    for j, target in enumerate(d.scale.delta_targets):
        note = ""
        if not np.isfinite(S["xi_delta_targets"][j]):
            note = d.missed(target)
        elif "xi_delta_below_first_shell" in S and S["xi_delta_below_first_shell"][j]:
            note = "upper bound: C_Δ below 1/e at the first pair distance (noisy Δ)"
        t.rows.append([f"ξ_Δ(δ = {target:g}): 1/e length of C_Δ(r)", "Figs 1-3", "Δ",
                       float(S["xi_delta_targets"][j]), float(S["xi_delta_used"][j]),
                       _paper_at_target(d, target, pxi["delta"]) if pxi else float("nan"), note])
    xd = float(d.S_attrs.get("xi_delta", np.nan))
    t.rows.append(["ξ_Δ of the indicator-propensity correlations", "Figs 5, 7; Table 5", "Δ",
                   xd, xd, pxi["fig57"] if pxi else float("nan"),
                   str(d.S_attrs.get("xi_delta_source", ""))])
    edge_words = {1: "the largest ξ scanned: the maximum may lie beyond the scan",
                  -1: "the smallest ξ scanned"}
    for x in d.shown():
        i = d.index(x)
        edge = int(S["xi_best_edge"][i]) if "xi_best_edge" in S else 0
        t.rows.append([f"ξ_{SYMBOLS[x]}: maximises the pooled C^max", "Figs 1, 2, 5, 7",
                       form_label(x, d.forms[x]), float(S["xi_best"][i]),
                       float(S["xi_best"][i]), pxi["indicators"] if pxi else float("nan"),
                       edge_words.get(edge, "") if np.isfinite(S["xi_best"][i]) else ""])
    xp = float(d.S_attrs.get("xi_pairs", np.nan))
    t.rows.append(["ξ of the indicator-indicator correlations ([analyze].xi_pairs)",
                   "Fig. 6, Table S2", "all", xp, xp, pxi["fig6"] if pxi else float("nan"),
                   "set in the config"])
    t.notes.append("Forms: " + ", ".join(form_label(x, d.forms[x]) for x in d.shown())
                   + " (the column 'form'); ξ_Δ is for Δ itself.")
    t.notes.append("The 1/e length is interpolated between the points of the mean C_Δ(r) "
                   "(Fig. 3) from the first pair distance on (the self term C(0) = 1 is left "
                   "out); where C_Δ is below 1/e already there, that distance is given as an "
                   "upper bound.")
    return t


def table3_scan(d: RunData) -> Table:
    S = d.S
    shown = d.shown()
    cols = ["ξ"]
    for x in shown:
        lab = form_label(x, d.forms[x])
        cols += [f"C^max ({lab})", f"δ* ({lab})"]
    t = Table("table3_scan", "Table 3 (scan): pooled C^max and δ* at every ξ of the scan", cols)
    for a, xi in enumerate(d.xis):
        row = [float(xi)]
        for x in shown:
            i = d.index(x)
            row += [float(S["cmax"][i, a, -1]), float(S["delta_star"][i, a, -1])]
        t.rows.append(row)
    best = ", ".join(f"{form_label(x, d.forms[x])} at ξ = {S['xi_best'][d.index(x)]:g}"
                     for x in shown)
    t.notes.append(f"Largest C^max (all temperatures pooled, Δ coarse-grained at ξ_Δ = "
                   f"{float(d.S_attrs.get('xi_delta', np.nan)):g}): {best}.")
    t.notes.append("Forms as in the column headers (X or 1 − X).")
    return t


# -- Table 4 -----------------------------------------------------------------------------------
def table4(d: RunData) -> Table:
    S, p = d.S, d.paper
    size, full = (d.study[0], d.scale.n_replicas) if d.study else (30, 100)
    cols = ["δ", "ξ_Δ", f"C(e{size}^i, e{size}^j) bare", f"C(ē{size}^i, ē{size}^j)",
            f"C(e{size}^i, ē{size}^i) own", f"C(e{full}, ē{full})", f"C(ē{size}, ē{full})",
            f"C(e{size}^i, ē{size}^j) other"]
    t = Table("table4", "Table 4: Pearson coefficients between the propensity of different "
                        "ensembles", cols)
    if d.study is None:
        why = [n for n in d.notes if "ensemble study" in n]
        t.notes.append("Not computed: " + (why[0] if why else "no ensemble study in "
                                           "analysis.h5 (attrs study = null)") + ".")
    else:
        for j, target in enumerate(d.scale.delta_targets):
            t.rows.append([float(target), float(S["xi_delta_used"][j]),
                           *(float(v) for v in S["table4"][j])])
        if not np.isfinite(S["table4"]).all():
            t.notes.append("— : target not reached, or an ensemble with a failed replica.")
        t.notes.append(f"Sub-ensembles of {d.study[0]} replicas ({d.study[1]} disjoint ones, "
                       f"e^A, e^B, ...) and the full ensemble of {full}; the bar means "
                       "coarse-grained at ξ_Δ of that δ; mean over configurations and "
                       "temperatures.")
    t.notes.append(f"C(e{size}, ē{size}) has two readings, both shown: 'own' correlates "
                   f"sub-ensemble i with its own coarse-grained field (mean over i); 'other' "
                   f"with the coarse-grained field of another sub-ensemble j ≠ i (mean over "
                   "i ≠ j). The paper's 'average over i ≠ j' may mean either; its 0.820 is "
                   "listed under 'own', the reading the package used before.")
    if p and p.get("table4"):
        t.rows.append(["paper (KAM, 30 / 100)", float("nan"), *p["table4"], float("nan")])
    t.notes.append(NA_FORM + " (Δ against Δ)")
    return t


# -- Table 5 -----------------------------------------------------------------------------------
def table5(d: RunData) -> Table:
    S, p = d.S, d.paper
    t = Table("table5", "Table 5: largest correlation C^max of each indicator with the "
                        "propensity, and where (δ*)",
              ["indicator", "form", "ξ", "T", "C^max", "± (bootstrap std)",
               "C^max 16-84 %", "δ*", "δ* 16-84 %", "null C^max (95 %)", "δ* at",
               "paper C^max", "paper δ*"])
    temps = d.scale.temperatures
    n_T = len(temps)
    X = len(d.indicators)
    nan3 = np.full((X, n_T + 1, 5), np.nan)
    unc = S.get("table5_uncertainty", nan3)
    nul = S.get("table5_null", nan3[..., :3])
    edge = S.get("table5_edge", np.zeros((X, n_T + 1), np.int8))
    where = {0: "inside", 1: "last δ (lower bound)", -1: "first δ"}

    def interval(lo, hi) -> str:
        return "—" if not (np.isfinite(lo) and np.isfinite(hi)) else f"{lo:.3g} – {hi:.3g}"

    for x in d.shown():
        i = d.index(x)
        T5 = S["table5"][i]                              # (n_T + 1, 3)
        pc, pd = p["table5"][x] if p else (float("nan"), float("nan"))
        for k in range(n_T + 1):
            last = k == n_T
            u = unc[i, k]
            t.rows.append([SYMBOLS[x], form_label(x, d.forms[x]), float(T5[k, 2]),
                           "all (pooled)" if last else float(temps[k]), float(T5[k, 0]),
                           float(u[0]), interval(u[1], u[2]), float(T5[k, 1]),
                           interval(u[3], u[4]), float(nul[i, k, 2]),
                           where[int(edge[i, k])], pc if last else float("nan"),
                           pd if last else float("nan")])
    t.notes.append("Form: C^max is the Pearson coefficient of the form shown (1 − X where the "
                   "paper flips X to make it positive) with Δ coarse-grained at ξ_Δ = "
                   f"{float(d.S_attrs.get('xi_delta', np.nan)):g}; the configurations are "
                   "pooled at common δ (a log-δ grid over the δ every configuration reached).")
    n_boot = int(d.S_attrs.get("n_bootstrap", 0))
    n_null = int(d.S_attrs.get("n_null_shifts", 0))
    t.notes.append(f"Uncertainty: {n_boot} bootstrap resamples (random-sign resampling of the "
                   "replicas of each ensemble and, with several configurations, configurations "
                   "drawn with replacement), at fixed ξ and ξ_Δ; 16-84 % is the percentile "
                   f"interval. Null: C^max of the indicator field under {n_null} random periodic "
                   "shifts against Δ, its 95th percentile; a C^max below it is not resolved."
                   if n_boot or n_null else "No uncertainty computed ([analyze].bootstrap = 0 "
                   "and null_shifts = 0).")
    if (edge == 1).any():
        t.notes.append("'last δ (lower bound)': C^max is at the last δ all configurations "
                       "reached: the curve may still rise there.")
    if not d.have_gamma:
        t.notes.append("No Γ rows: the CNN stages were not run (no gradcam.h5).")
    return t


# -- Table S2 ----------------------------------------------------------------------------------
def shown_pairs(d: RunData) -> list[str]:
    return [q for q in d.pairs if d.have_gamma or "gamma" not in q]


def table_s2(d: RunData) -> Table:
    S, p = d.S, d.paper
    t = Table("tableS2", "Table S2: pairwise correlation of the indicators over test samples "
                         f"(ξ = {float(d.S_attrs.get('xi_pairs', np.nan)):g})",
              ["class", "pair (bare indicators)", "samples", "Pearson mean", "Pearson std",
               "Spearman mean", "Spearman std", "constant fields", "paper Pearson mean"])
    for cls, cname in ((1, "glass"), (0, "liquid")):
        for q in shown_pairs(d):
            j = d.pairs.index(q)
            a, b = q.split("-")
            P, R = S["pairs_pearson"][cls, j], S["pairs_spearman"][cls, j]
            paper = p["pairs_glass_mean"][q] if p and cls == 1 else float("nan")
            t.rows.append([cname, f"{SYMBOLS[a]}, {SYMBOLS[b]}", int(P[0]), float(P[1]),
                           float(P[2]), float(R[1]), float(R[2]), int(S["n_constant"][cls, j]),
                           paper if isinstance(paper, str) else float(paper)])
    mis = S["n_misclassified"]
    t.notes.append("Form: the bare indicators (X, not 1 - X), as in the paper's Fig. 6 and "
                   "Table S2.")
    left = (f"misclassified test samples (liquid {int(mis[0])}, glass {int(mis[1])})"
            if d.have_gamma else "none (no CNN, so no classification)")
    t.notes.append(f"Left out: {left}; 'constant fields': samples where a field is constant, "
                   "so the coefficient is undefined.")
    if not d.have_gamma:
        t.notes.append("No Γ pairs: the CNN stages were not run (no gradcam.h5).")
    return t


# -- crystallisation check (supplement S6, S7) -------------------------------------------------
def crystallisation(d: RunData) -> Table:
    S = d.S
    t = Table("crystallisation", "Crystallisation check (supplement Figs S6, S7)",
              ["check", "this run", "paper"])
    jumps = S["energy_jump"]
    where = S["energy_jump_T"][jumps == 1]
    t.rows.append(["runs whose U(T) jumps (ok runs)", f"{int((jumps == 1).sum())} of "
                   f"{int((jumps >= 0).sum())}", "none (Fig. S6)"])
    if where.size:
        t.rows.append(["temperatures of the jumps", ", ".join(f"{v:.3g}" for v in where[:20]),
                       ""])
    psi = d.headline.get("crystallisation", {})
    flag = S["psi6_flag"]
    t.rows.append([f"glass test samples with |ψ6| > {psi.get('psi6_threshold', 0.3)}",
                   f"{int(flag[:, 1].sum())} of {len(flag)}", "—"])
    t.rows.append(["mean |ψ6| of the glass test samples", _nan(psi.get("glass_psi6_mean")), "—"])
    t.rows.append(["g(r) of the glass", "see the g(r) figure", "no crystal peaks (Fig. S7)"])
    t.notes.append(NA_FORM)
    return t


def build(d: RunData) -> list[Table]:
    """Every table of the report, in the order shown."""
    return [scale(d), table2(d), table3(d), table3_scan(d), table4(d), table5(d), table_s2(d),
            crystallisation(d)]
