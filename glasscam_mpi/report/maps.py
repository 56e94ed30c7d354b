"""Per-particle maps: Figs 1-2 (the indicators and the propensity of the first propensity
configuration) and Fig. 4 (the ensemble study).

Particles are drawn as discs of their species' diameter sigma_ss at their glass positions
(prepare.h5 ``glass[configs[0]]``), periodic images included near the edges, coloured by
the normalised field on a fixed 0..1 scale. In 3D a slab around the box's middle plane is
shown.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from glasscam_mpi.report import ensemble
from glasscam_mpi.report.data import RunData, form_label
from glasscam_mpi.report.plotting import FigureFile, length_label, new_figure, save, skipped

CMAP = "viridis"
SLAB = 0.5      # half-thickness of the 3D slab (length units)


def _visible(d: RunData) -> tuple[np.ndarray, np.ndarray]:
    """(indices, xy) of the particles drawn, periodic images within one diameter of the
    edges included (2D: all particles; 3D: the slab |z - L_z / 2| < SLAB)."""
    x, L = d.positions % d.box, d.box
    idx = np.arange(len(x))
    if x.shape[1] == 3:
        idx = idx[np.abs(x[:, 2] - L[2] / 2) < SLAB]
    xy, L2 = x[idx, :2], L[:2]
    out_i, out_xy = [idx], [xy]
    for sx in (-1, 0, 1):
        for sy in (-1, 0, 1):
            if sx == sy == 0:
                continue
            shifted = xy + np.array([sx, sy]) * L2
            near = np.all((shifted > -1.0) & (shifted < L2 + 1.0), axis=1)
            out_i.append(idx[near])
            out_xy.append(shifted[near])
    return np.concatenate(out_i), np.concatenate(out_xy)


def _draw(ax, d: RunData, values: np.ndarray | None, title: str, empty: str = ""):
    """Discs coloured by ``values`` (N,) in [0, 1]; an empty panel saying ``empty`` when
    there is nothing to show. Returns the collection (for the colour bar) or None."""
    from matplotlib.collections import EllipseCollection

    L = d.box[:2]
    ax.set(xlim=(0, L[0]), ylim=(0, L[1]), aspect="equal", title=title,
           xlabel=length_label(d, "x"), ylabel=length_label(d, "y"))
    ax.title.set_fontsize(9)
    if values is None or not np.isfinite(values).any():
        ax.text(0.5, 0.5, empty or "no data", ha="center", va="center", wrap=True,
                transform=ax.transAxes, fontsize=9, color="0.3")
        return None
    idx, xy = _visible(d)
    sigma = np.array([d.cfg.sys.sigma_ab(s, s) for s in range(d.cfg.sys.n_species)])
    diam = sigma[d.types[idx].astype(int)]
    coll = EllipseCollection(diam, diam, np.zeros_like(diam), units="xy", offsets=xy,
                             offset_transform=ax.transData, cmap=CMAP, edgecolors="k",
                             linewidths=0.2)
    coll.set_array(np.asarray(values, dtype=float)[idx])
    coll.set_clim(0.0, 1.0)
    ax.add_collection(coll)
    return coll


def _colourbar(fig, axes, mappable) -> None:
    if mappable is not None:
        fig.colorbar(mappable, ax=axes, shrink=0.6, label="normalised value (0 … 1)")


def indicator_maps(d: RunData, out: Path) -> FigureFile:
    """Figs 1-2: the indicators at their xi and Delta at each target at its xi_Delta."""
    title = "Figs 1-2: indicators and propensity of the first propensity configuration"
    shown, targets, temps = d.shown(), d.scale.delta_targets, d.scale.temperatures
    ncols = max(len(shown), len(targets))
    fig, axes = new_figure(d, title, 1 + len(temps), ncols, size=(3.6, 3.6))
    for ax in axes.ravel():
        ax.set_visible(False)
    mappable = None
    finite_k = [k for k in range(len(temps)) if np.isfinite(d.maps_indicators[k]).any()]
    letters = iter("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    for c, x in enumerate(shown):
        ax = axes[0, c]
        ax.set_visible(True)
        i, xi = d.index(x), d.S["xi_best"][d.index(x)]
        vals = (d.maps_indicators[finite_k[0], i, d.xi_index(xi)]
                if finite_k and np.isfinite(xi) else None)
        mappable = _draw(ax, d, vals, f"({next(letters)}) {form_label(x, d.forms[x])}, "
                                      f"ξ = {xi:g}", "no analysed ensemble") or mappable
    for k, T in enumerate(temps):
        for j, target in enumerate(targets):
            ax = axes[1 + k, j]
            ax.set_visible(True)
            xi = d.S["xi_delta_used"][j]
            label = f"({next(letters, '')}) Δ(δ = {target:g}), T = {T:.3g}"
            if not d.reportable[0, k]:
                why = f"ensemble not analysed ({d.n_ok_replicas[0, k]} ok replicas)"
                mappable = _draw(ax, d, None, label, why) or mappable
            elif not np.isfinite(xi) or not np.isfinite(d.maps_delta[k, j]).any():
                why = d.missed(target, 0, k).replace(" (", "\n(")
                mappable = _draw(ax, d, None, label, why) or mappable
            else:
                mappable = _draw(ax, d, d.maps_delta[k, j, d.xi_index(xi)],
                                 f"{label}, ξ_Δ = {xi:g}") or mappable
    _colourbar(fig, [a for a in axes.ravel() if a.get_visible()], mappable)
    where = " (3D: slab |z − L/2| < 0.5)" if d.scale.dim == 3 else ""
    return save(fig, out, "fig1_2_maps", title,
                f"Run {int(d.configs[0])} of prepare.h5 (glass){where}. Top: the structural "
                "indicators coarse-grained at their ξ (Table 3) in the form used for the "
                "correlations; below: the propensity Δ at each δ target, coarse-grained at "
                "that target's ξ_Δ, one row per temperature (dynamics/maps_*). All "
                "normalised to [0, 1].")


def ensemble_maps(d: RunData, out: Path) -> FigureFile:
    """Fig. 4: bare and coarse-grained propensity of the sub-ensembles and the full one."""
    title = "Fig. 4: propensity of disjoint sub-ensembles and of the full ensemble"
    pick = ensemble.choose(d)
    if isinstance(pick, str):
        return skipped("fig4_ensembles", title, pick)
    k, j = pick
    m = ensemble.compute(d, k, j)
    n = len(m.labels)
    fig, axes = new_figure(d, f"{title} (δ = {m.target:g}, T = {m.temperature:.3g})", 2, n,
                           size=(3.4, 3.4))
    mappable = None
    for c, lab in enumerate(m.labels):
        mappable = _draw(axes[0, c], d, m.bare[:, c], f"{lab}, bare") or mappable
        _draw(axes[1, c], d, m.coarse[:, c], f"{lab}, coarse-grained (ξ_Δ = {m.xi:g})")
    _colourbar(fig, axes.ravel().tolist(), mappable)
    return save(fig, out, "fig4_ensembles", title,
                f"Configuration 0 (run {int(d.configs[0])}); the propensity of each "
                "sub-ensemble and of all replicas at the full ensemble's crossing of δ = "
                f"{m.target:g}, computed here from propensity.h5 cage_displacement as analyze "
                "does for Table 4; each map normalised to [0, 1].")

