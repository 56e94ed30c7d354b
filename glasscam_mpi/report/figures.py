"""The report's curves: Figs 3, 5/7, 6, 8, the xi scan, U(T) (S6) and g(r) (S7).

Each function draws from :class:`~glasscam_mpi.report.data.RunData` only (the summary of
analysis.h5 and the cooling curves of prepare.h5) and returns a
:class:`~glasscam_mpi.report.plotting.FigureFile`. The maps (Figs 1, 2, 4) are in
:mod:`glasscam_mpi.report.maps`.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np

from glasscam_mpi.report.data import SYMBOLS, RunData, form_label
from glasscam_mpi.report.plotting import (COLOURS, MARKERS, FigureFile, length_label,
                                          new_figure, save, skipped)
from glasscam_mpi.report.tables import shown_pairs


def _temperature_colours(n: int):
    from matplotlib import colormaps

    cmap = colormaps["plasma"]
    return [cmap(0.1 + 0.7 * k / max(n - 1, 1)) for k in range(n)]


def corr_delta(d: RunData, out: Path) -> FigureFile:
    """Fig. 3: C_Delta(r) at each delta target, the 1/e line and xi_Delta."""
    title = "Fig. 3: spatial correlation of the propensity C_Δ(r)"
    C = d.S["corr_delta_r_mean"]
    if not np.isfinite(C).any():
        return skipped("fig3_corr_delta", title, "no δ target was reached: no C_Δ(r)")
    fig, ax = new_figure(d, title, size=(6.0, 4.2))
    ax = ax[0, 0]
    for j, target in enumerate(d.scale.delta_targets):
        if not np.isfinite(C[j]).any():
            ax.plot([], [], " ", label=f"δ = {target:g}: not reached")
            continue
        line, = ax.plot(d.r, C[j], "-o", ms=3, label=f"δ = {target:g}")
        xi = d.S["xi_delta_targets"][j]
        if np.isfinite(xi):
            ax.axvline(xi, color=line.get_color(), ls="--", lw=1)
            ax.annotate(f"ξ_Δ = {xi:.2f}", (xi, 0.95 - 0.07 * j), xytext=(4, 0),
                        xycoords=("data", "axes fraction"), textcoords="offset points",
                        color=line.get_color(), fontsize=8)
    ax.axhline(1 / math.e, color="k", ls=":", lw=1, label="1/e")
    ax.axhline(0, color="0.6", lw=0.5)
    ax.set(xlabel=length_label(d), ylabel=r"$C_\Delta(r)$")
    ax.legend(fontsize=8)
    return save(fig, out, "fig3_corr_delta", title,
                "Mean over the reportable ensembles (summary/corr_delta_r_mean); dashed: the "
                "1/e length ξ_Δ of each target (summary/xi_delta_targets). The first point is "
                "the self term C(0) = 1; empty distance bins are gaps.")


def curves(d: RunData, out: Path) -> FigureFile:
    """Figs 5 and 7: C_{X,Delta}(delta) at each indicator's xi, every temperature."""
    title = "Figs 5, 7: correlation of the indicators with the propensity vs δ"
    S, temps = d.S, d.scale.temperatures
    shown = d.shown()
    if not np.isfinite(S["curves"]).any():
        return skipped("fig5_7_curves", title, "no propensity ensemble was analysed")
    panels = ([("Fig. 5", ["gamma"])] if d.have_gamma else []) + [("Fig. 7", shown)]
    fig, axes = new_figure(d, title, 1, len(panels), size=(5.6, 4.3))
    colours = _temperature_colours(len(temps))
    for ax, (name, which) in zip(axes[0], panels):
        for x in which:
            i = d.index(x)
            xi = S["xi_best"][i]
            if not np.isfinite(xi):
                continue
            a = d.xi_index(xi)
            lab = form_label(x, d.forms[x])
            for k, T in enumerate(temps):
                ax.plot(S["curve_delta"][k], S["curves"][i, a, k], marker=MARKERS[x], ms=4,
                        lw=1, color=colours[k], mfc="none" if len(which) > 1 else colours[k],
                        label=f"{lab} (ξ = {xi:g}), T = {T:.3g}")
            cm, ds = S["table5"][i, -1, 0], S["table5"][i, -1, 1]
            if np.isfinite(cm):
                ax.plot([ds], [cm], "*", ms=14, color=COLOURS[x], mec="k",
                        label=f"$C^{{\\max}}$ {lab} = {cm:.3f} at δ* = {ds:.3g}")
        for target in d.scale.delta_targets:
            ax.axvline(target, color="0.4", ls=":", lw=1)
        ax.set_xscale("log")
        ax.set(xlabel=f"δ, mean cage-relative displacement [{d.scale.units[0]}]",
               ylabel=r"Pearson $C_{X,\Delta}$", title=name)
        ax.legend(fontsize=6.5, ncol=1)
    return save(fig, out, "fig5_7_curves", title,
                "summary/curves at each indicator's ξ (summary/xi_best) against summary/"
                f"curve_delta; Δ coarse-grained at ξ_Δ = {float(d.S_attrs['xi_delta']):g}; "
                "colours: temperatures; stars: C^max of all temperatures pooled (Table 5); "
                "dotted: the δ targets.")


def violins(d: RunData, out: Path) -> FigureFile:
    """Fig. 6: per-sample Pearson coefficients of the three pairs, glass vs liquid."""
    title = "Fig. 6: Pearson coefficients between indicators over test samples"
    xp = float(d.S_attrs.get("xi_pairs", np.nan))
    a = d.xi_index(xp)
    pairs = shown_pairs(d)
    data, positions, colours, ticks = [], [], [], []
    for p, q in enumerate(pairs):
        j = d.pairs.index(q)
        for c, (cls, colour) in enumerate(((1, "tab:blue"), (0, "tab:orange"))):
            v = d.pearson[d.correct[:, cls] != 0, cls, a, j]
            v = v[np.isfinite(v)]
            if v.size:
                data.append(v)
                positions.append(3 * p + c)
                colours.append(colour)
        u, w = q.split("-")
        ticks.append((3 * p + 0.5, f"C({SYMBOLS[u]}, {SYMBOLS[w]})"))
    if not data:
        return skipped("fig6_violins", title, "no correctly classified test sample with a "
                                              "finite coefficient")
    fig, ax = new_figure(d, title, size=(6.5, 4.3))
    ax = ax[0, 0]
    parts = ax.violinplot(data, positions=positions, showmeans=True, widths=0.9)
    for body, colour in zip(parts["bodies"], colours):
        body.set_facecolor(colour)
        body.set_alpha(0.6)
    for name in ("cmeans", "cmins", "cmaxes", "cbars"):
        if name in parts:
            parts[name].set_color("0.2")
            parts[name].set_linewidth(1)
    for v, x, colour in zip(data, positions, colours):
        ax.plot(np.full(v.size, x), v, ".", color=colour, ms=3, alpha=0.7)
    ax.set_xticks([t[0] for t in ticks], [t[1] for t in ticks])
    for colour, name in (("tab:blue", "glass"), ("tab:orange", "liquid")):
        ax.plot([], [], "s", color=colour,
                label=name if colour in colours else f"{name}: no correctly classified sample")
    ax.axhline(0, color="0.6", lw=0.5)
    ax.set(ylabel="Pearson coefficient (bare indicators)", ylim=(-1.05, 1.05))
    ax.legend(fontsize=8)
    return save(fig, out, "fig6_violins", title,
                f"samples/pearson at ξ = {xp:g}, correctly classified test samples only "
                "(samples/correct != 0), of the bare indicators as in the paper.")


def corr_r(d: RunData, out: Path) -> FigureFile:
    """Fig. 8: C(r) of the bare indicators of the glass, and of Gamma per CNN layer."""
    title = "Fig. 8: spatial correlation C(r) of the bare indicators (glass)"
    S = d.S
    if not np.isfinite(S["corr_r_mean"][1]).any():
        return skipped("fig8_corr_r", title, "no correctly classified glass test sample: analyze "
                                             "averages C(r) over those only (summary/corr_r_mean "
                                             "is NaN for the glass)")
    layers = d.have_gamma and d.n_layers > 0 and np.isfinite(S["corr_r_layers_mean"][1]).any()
    fig, axes = new_figure(d, title, 1, 2 if layers else 1, size=(5.4, 4.2))
    ax = axes[0, 0]
    for x in d.shown():
        i = d.index(x)
        line, = ax.plot(d.r, S["corr_r_mean"][1, :, i], "-", marker=MARKERS[x], ms=3,
                        color=COLOURS[x], label=f"{SYMBOLS[x]}")
        rz = S["r_zero"][1, i]
        shell = "r_zero_first_shell" in S and bool(S["r_zero_first_shell"][1, i])
        if np.isfinite(rz):
            ax.axvline(rz, color=COLOURS[x], ls="--", lw=1)
            ax.plot([], [], " ", label=f"  r_{SYMBOLS[x]} {'≤' if shell else '='} {rz:.2f} (C = 0"
                                      + (", at the first shell already)" if shell else ")"))
    ax.axhline(0, color="k", lw=0.7)
    ax.set(xlabel=length_label(d), ylabel=r"$C_X(r)$", title="bare Γ, Υ, Θ")
    ax.legend(fontsize=8)
    if layers:
        ax = axes[0, 1]
        for l in range(d.n_layers):
            rz = S["r_zero_layers"][1, l]
            line, = ax.plot(d.r, S["corr_r_layers_mean"][1, :, l], "-o", ms=3,
                            label=f"conv layer {l + 1}: r_Γ = {rz:.2f}")
            if np.isfinite(rz):
                ax.axvline(rz, color=line.get_color(), ls="--", lw=1)
        ax.axhline(0, color="k", lw=0.7)
        ax.set(xlabel=length_label(d), ylabel=r"$C_\Gamma(r)$", title="Γ of each CNN layer")
        ax.legend(fontsize=8)
    return save(fig, out, "fig8_corr_r", title,
                "summary/corr_r_mean (glass, correctly classified samples); dashed: where C(r) "
                "first crosses 0 (summary/r_zero; '≤' where C ≤ 0 already at the first pair "
                "distance, summary/r_zero_first_shell: an upper bound)"
                + ("; right: Grad-CAM of each convolution layer (summary/corr_r_layers_mean), "
                   "the sensitivity to the layer." if layers else "."))


def xi_scan(d: RunData, out: Path) -> FigureFile:
    """Table 3's scan: pooled C^max against xi for each indicator."""
    title = "ξ scan: largest correlation with the propensity vs coarse-graining length"
    fig, ax = new_figure(d, title, size=(5.6, 4.0))
    ax = ax[0, 0]
    for x in d.shown():
        i = d.index(x)
        lab = form_label(x, d.forms[x])
        ax.plot(d.xis, d.S["cmax"][i, :, -1], "-", marker=MARKERS[x], color=COLOURS[x],
                label=lab)
        best = d.S["xi_best"][i]
        if np.isfinite(best):
            ax.plot([best], [d.S["cmax"][i, d.xi_index(best), -1]], "*", ms=14,
                    color=COLOURS[x], mec="k")
    ax.set(xlabel=length_label(d, "ξ"), ylabel=r"$C^{\max}$ (all temperatures pooled)")
    ax.legend(fontsize=8)
    return save(fig, out, "xi_scan", title,
                "summary/cmax (last column: pooled); stars: the ξ used (summary/xi_best); Δ at "
                f"ξ_Δ = {float(d.S_attrs['xi_delta']):g}.")


def energy(d: RunData, out: Path) -> FigureFile:
    """Supplement S6: U(T) along the cooling ramp, T* marked, jumps highlighted."""
    title = "U(T) along the cooling ramp (supplement Fig. S6)"
    T, U = d.cooling_T, d.cooling_U
    if T.size == 0:
        return skipped("energy", title, "no ok cooling run")
    s = d.scale
    fig, ax = new_figure(d, title, size=(6.4, 4.4))
    ax = ax[0, 0]
    for r in range(min(5, len(T))):
        ax.plot(T[r], U[r], "-", color="0.7", lw=0.8,
                label="single runs" if r == 0 else None)
    jumps = d.S["energy_jump"][d.ok_runs] == 1
    for n, r in enumerate(np.flatnonzero(jumps)[:10]):
        ax.plot(T[r], U[r], "-", color="tab:red", lw=1.2,
                label=f"runs with an energy jump ({int(jumps.sum())})" if n == 0 else None)
    ax.plot(T.mean(axis=0), U.mean(axis=0), "k-", lw=2, label=f"mean of {len(T)} ok runs")
    for value, style, name in ((s.T_star_estimate, "-", "T* estimate"),
                               (s.T_star_used, ":", f"T* used ({s.T_star_source})"),
                               (s.T_star_paper, "--", "T* paper")):
        if value is not None and math.isfinite(value):
            ax.axvline(value, color="tab:purple", ls=style, lw=1.2, label=f"{name} = {value:.3g}")
    ax.set(xlabel=f"measured T [{s.units[1]}/k_B]",
           ylabel=f"potential energy per particle U [{s.units[1]}]")
    ax.legend(fontsize=8)
    return save(fig, out, "energy", title,
                "prepare.h5 T and pe along the ramp; a jump (summary/energy_jump) would signal "
                "crystallisation.")


def rdf(d: RunData, out: Path) -> FigureFile:
    """Supplement S7: g(r) of the glass and liquid test samples."""
    title = "Radial distribution functions of the test samples (supplement Fig. S7)"
    g = d.S["rdf_mean"]                                   # (2, B, P): pairs a <= b
    if not np.isfinite(g).any():
        return skipped("rdf", title, "no g(r) in analysis.h5")
    sp = d.cfg.sys.species
    names = [sp[a] + sp[b] for a in range(len(sp)) for b in range(a, len(sp))]
    fig, axes = new_figure(d, title, 1, len(names), size=(4.0, 3.6))
    for c, ax in enumerate(axes[0]):
        ax.plot(d.r_rdf, g[1, :, c], "-", color="tab:blue", label="glass")
        ax.plot(d.r_rdf, g[0, :, c], "-", color="tab:orange", label="liquid")
        ax.set(xlabel=length_label(d), ylabel=f"g_{names[c]}(r)", title=names[c])
        ax.legend(fontsize=8)
    return save(fig, out, "rdf", title, "summary/rdf_mean, mean over the test samples.")


def train_curves(d: RunData, out: Path) -> FigureFile:
    """The training curves of train/curves.png, copied."""
    title = "CNN training: loss and accuracy per epoch"
    if d.curves_png is None:
        return skipped("train_curves", title, "no train/curves.png (the CNN was not trained)")
    path = out / "train_curves.png"
    shutil.copyfile(d.curves_png, path)
    return FigureFile("train_curves", title, "train/curves.png of the train stage.", path)
