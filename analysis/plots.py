"""Figures for the report, each written to a PNG and returned as its path. Matplotlib, Agg only."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import TwoSlopeNorm

from analysis import fragility as F
from analysis.tidy import BASELINE

# 0 = at chance / broken (red), 1 = as the baseline (pale), above 1 = better than the baseline (blue).
NORM = TwoSlopeNorm(vmin=0.0, vcenter=1.0, vmax=1.5)
CMAP = "RdYlBu"


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _label(key: tuple) -> str:
    model, size, variant, method = key
    return f"{model} ({variant}, {method})"


HEATMAP_COLUMNS = 3  # panels (model x method) a row


def heatmap(ret: pd.DataFrame, hier: pd.DataFrame, path: Path) -> Path:
    """Benchmark (most fragile on top) x expansion ratio (widest left), one panel per model."""
    pruned = ret[ret["method"] != BASELINE]
    groups = list(pruned.groupby(F.GROUP, sort=True))
    cols = min(HEATMAP_COLUMNS, len(groups))  # a sweep of many metrics wraps: one row of nine is unreadable
    rows = math.ceil(len(groups) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.5 * cols, (0.45 * ret["benchmark"].nunique() + 1.8) * rows),
                             squeeze=False, layout="constrained")
    for ax in axes.flat[len(groups):]:
        ax.axis("off")
    for ax, (key, pts) in zip(axes.flat, groups):
        order = hier[(hier[F.GROUP] == pd.Series(key, index=F.GROUP)).all(axis=1)]["benchmark"].tolist()
        grid = pts.pivot_table(index="benchmark", columns="ratio", values="retention").reindex(order)
        grid = grid[sorted(grid.columns, reverse=True)]
        im = ax.imshow(grid.clip(lower=0, upper=1.5).to_numpy(), cmap=CMAP, norm=NORM, aspect="auto")
        for (i, j), v in np.ndenumerate(grid.to_numpy()):
            if not math.isnan(v):
                dark = v < 0.15 or v > 1.35  # white text where the cell colour is deep
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="white" if dark else "black")
        ax.set_xticks(range(grid.shape[1]), [f"{r:g}x" for r in grid.columns])
        ax.set_yticks(range(grid.shape[0]), grid.index)
        ax.set_xlabel("expansion ratio (narrower →)")
        ax.set_title(_label(key), fontsize=9)
    fig.colorbar(im, ax=axes.ravel().tolist(), label="retention (1 = baseline, 0 = chance)", shrink=0.8)
    return _save(fig, path)


def capability_curves(ret: pd.DataFrame, path: Path) -> Path:
    """Retention against expansion ratio, one panel per capability, a line per model, method and benchmark."""
    caps = sorted(ret["capability"].unique())
    cols = min(4, len(caps))
    rows = math.ceil(len(caps) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False, sharey=True)
    for ax, cap in zip(axes.flat, caps):
        for key, curve in F.curves(ret[ret["capability"] == cap]).items():
            ax.plot(curve["ratio"], curve["retention"].clip(-0.5, 2), marker="o", ms=3,
                    label=f"{key[0]} {key[3]} {key[4]}" + ("" if key[2] == "base" else f" ({key[2]})"))
        ax.axhline(1, color="grey", lw=0.8)
        ax.axhline(F.BREAK, color="grey", lw=0.8, ls=":")
        ax.invert_xaxis()  # narrowing reads left to right
        ax.set_title(cap, fontsize=10)
        ax.set_xlabel("expansion ratio")
        ax.legend(fontsize=6)
    for ax in axes.flat[len(caps):]:
        ax.axis("off")
    axes[0][0].set_ylabel("retention")
    fig.tight_layout()
    return _save(fig, path)


def base_vs_instruct(table: pd.DataFrame, path: Path) -> Path | None:
    """Fragility in the base model (x) against its instruct variant (y); None when no pairs."""
    if table.empty:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    for (size, method), grp in table.groupby(["size", "method"]):
        ax.errorbar(grp["fragility_base"], grp["fragility_instruct"],
                    xerr=[grp["fragility_base"] - grp["lo_base"], grp["hi_base"] - grp["fragility_base"]],
                    yerr=[grp["fragility_instruct"] - grp["lo_instruct"], grp["hi_instruct"] - grp["fragility_instruct"]],
                    fmt="o", capsize=2, label=f"{size} {method}")
        for row in grp.itertuples():
            ax.annotate(row.benchmark, (row.fragility_base, row.fragility_instruct), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
    lims = [min(ax.get_xlim()[0], ax.get_ylim()[0]), max(ax.get_xlim()[1], ax.get_ylim()[1])]
    ax.plot(lims, lims, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("fragility, base (1 - mean retention)")
    ax.set_ylabel("fragility, instruct")
    ax.set_title("above the line: instruct is more fragile", fontsize=9)
    ax.legend(fontsize=7)
    return _save(fig, path)


def pareto(table: pd.DataFrame, path: Path) -> Path:
    """Retention (mean over benchmarks, 95% interval) against each cost axis, one panel per axis;
    each (model, variant, method) in its colour, its front joined by a line, the baseline a star."""
    from analysis.pareto import AXES, GROUP

    fig, axes = plt.subplots(1, len(AXES), figsize=(5 * len(AXES), 4.2), squeeze=False, layout="constrained")
    groups = list(table.groupby(GROUP, sort=True))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, axis in zip(axes[0], AXES):
        ax.set_xlabel(axis.label + (" →" if axis.higher_is_better else " ←  (less is better)"))
        ax.axhline(1, color="grey", lw=0.8)
        if not table[axis.column].notna().any():
            ax.text(0.5, 0.5, "not measured\n(no counter on this device)" if axis.short == "energy" else "not measured",
                    ha="center", va="center", transform=ax.transAxes, color="grey")
            continue
        for i, (key, grp) in enumerate(groups):
            colour = colours[i % len(colours)]
            pts = grp[grp[axis.column].notna()]
            ax.errorbar(pts[axis.column], pts["retention"], yerr=[pts["retention"] - pts["lo"], pts["hi"] - pts["retention"]],
                        fmt="o", ms=4, capsize=2, color=colour, alpha=0.8, label=f"{key[0]} {key[3]}")
            front = pts[pts[f"front_{axis.short}"]].sort_values(axis.column)
            ax.plot(front[axis.column], front["retention"], color=colour, lw=1.2)
            base = pts[pts["is_base"]]
            ax.plot(base[axis.column], base["retention"], "*", ms=11, color=colour)
            for row in pts.itertuples():
                ax.annotate("base" if row.is_base else f"{row.ratio:g}x", (getattr(row, axis.column), row.retention),
                            fontsize=6, xytext=(3, 3), textcoords="offset points")
    axes[0][0].set_ylabel("retention, mean over benchmarks (1 = unpruned)")
    if axes[0][0].get_legend_handles_labels()[0]:  # no points, no legend (matplotlib warns)
        axes[0][0].legend(fontsize=7)
    fig.suptitle("What pruning buys: retention vs cost; lines join each method's Pareto front", fontsize=10)
    return _save(fig, path)
