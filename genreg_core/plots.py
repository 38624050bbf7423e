"""Pure Plotly figure builders: arrays in, ``go.Figure`` out (no computation, no UI)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

ColorBy = Literal["source", "class", "flag"]
PALETTE = qualitative.D3 + qualitative.Set2
SOURCE_COLORS = {"real": "#1f77b4", "synthetic": "#d62728"}
PRDC_KEYS = ("precision", "recall", "density", "coverage")


def _scatter(xy: np.ndarray, **kwargs) -> go.Scatter | go.Scatter3d:
    if xy.shape[1] == 3:
        marker = dict(kwargs.pop("marker", {}), size=3)
        return go.Scatter3d(x=xy[:, 0], y=xy[:, 1], z=xy[:, 2], mode="markers", marker=marker, **kwargs)
    return go.Scattergl(x=xy[:, 0], y=xy[:, 1], mode="markers", **kwargs)


def feature_scatter(real_xy: np.ndarray, synth_xy: np.ndarray, real_labels: np.ndarray, synth_labels: np.ndarray,
                    class_names: Sequence[str], color_by: ColorBy = "source",
                    synth_in_manifold: np.ndarray | None = None, real_covered: np.ndarray | None = None,
                    real_ids: np.ndarray | None = None, synth_ids: np.ndarray | None = None,
                    title: str = "", axis_name: str = "component",
                    highlight_classes: Sequence[int] | None = None) -> go.Figure:
    """Real (circles) and synthetic (crosses) points; ``customdata`` carries a global sample id.

    Ids default to ``0..N-1`` for real points and ``N..N+M-1`` for synthetic ones. With ``highlight_classes``,
    points of the other classes stay in the figure as a faint grey backdrop, so the axes do not move.
    """
    n = len(real_xy)
    real_ids = np.arange(n) if real_ids is None else real_ids
    synth_ids = n + np.arange(len(synth_xy)) if synth_ids is None else synth_ids
    fig = go.Figure()
    sets = [("real", real_xy, real_ids, real_labels, "circle", real_covered),
            ("synthetic", synth_xy, synth_ids, synth_labels, "x", synth_in_manifold)]
    if highlight_classes:
        keep = [np.isin(labels, list(highlight_classes)) for _, _, _, labels, _, _ in sets]
        back_xy = np.concatenate([xy[~k] for k, (_, xy, *_) in zip(keep, sets)])
        fig.add_trace(_scatter(back_xy, name="other classes", hoverinfo="skip",  # no ids: not selectable
                               marker=dict(color="#b4b4b4", size=5, opacity=0.45)))
        sets = [(s, xy[k], ids[k], labels[k], sym, None if flags is None else flags[k])
                for k, (s, xy, ids, labels, sym, flags) in zip(keep, sets)]
    groups = []  # (name, xy, ids, labels, color, symbol, legend group)
    for source, xy, ids, labels, symbol, flags in sets:
        if color_by == "class":
            for c in np.unique(labels):
                m = labels == c
                groups.append((f"{source} · {class_names[c]}", xy[m], ids[m], labels[m], PALETTE[c % len(PALETTE)],
                               symbol, f"class {class_names[c]}"))
        elif color_by == "flag":
            if flags is None:
                raise ValueError("color_by='flag' needs the manifold flags")
            yes, no = ("in real manifold", "off manifold") if source == "synthetic" else ("covered", "not covered")
            for value, label, color in ((True, yes, "#2ca02c"), (False, no, "#ff7f0e" if source == "synthetic"
                                                                   else "#7f7f7f")):
                m = flags == value
                groups.append((f"{source} · {label}", xy[m], ids[m], labels[m], color, symbol, source))
        else:
            groups.append((source, xy, ids, labels, SOURCE_COLORS[source], symbol, source))
    for name, xy, ids, labels, color, symbol, group in groups:
        hover = [f"{name}<br>id {i}<br>class {class_names[c]}" for i, c in zip(ids, labels)]
        fig.add_trace(_scatter(xy, name=name, legendgroup=group, customdata=np.asarray(ids)[:, None],
                               marker=dict(color=color, symbol=symbol, size=6, opacity=0.75),
                               hovertext=hover, hoverinfo="text"))
    fig.update_layout(title=title, height=560, margin=dict(l=10, r=10, t=40, b=10), legend=dict(itemsizing="constant"),
                      dragmode="lasso", uirevision="keep")  # keep the user's zoom across reruns
    _axis_titles(fig, axis_name, real_xy.shape[1])
    return fig


def _axis_titles(fig: go.Figure, axis_name: str, dims: int = 2) -> None:
    """Title the axes of a 2-D or 3-D projection ``"<axis_name> 1"``, ``"<axis_name> 2"``, …"""
    titles = [f"{axis_name} {i + 1}" for i in range(dims)]
    if dims == 3:
        fig.update_layout(scene=dict(xaxis_title=titles[0], yaxis_title=titles[1], zaxis_title=titles[2]))
    else:
        fig.update_layout(xaxis_title=titles[0], yaxis_title=titles[1])


def metric_bars(per_class: list[dict], class_names: Sequence[str]) -> go.Figure:
    """Grouped bars of precision / recall / density / coverage for each class."""
    fig = go.Figure()
    names = [class_names[row["class"]] for row in per_class]
    for i, key in enumerate(PRDC_KEYS):
        fig.add_trace(go.Bar(name=key, x=names, y=[row[key] for row in per_class], marker_color=PALETTE[i]))
    fig.update_layout(barmode="group", height=360, xaxis_title="class", yaxis_title="value",
                      margin=dict(l=10, r=10, t=30, b=10))
    return fig


METRIC_TITLES = {
    "mse": "pixel MSE to the original",
    "feature_distance": "feature distance to the original",
    "precision": "precision (fidelity)",
    "recall": "recall (diversity)",
    "density": "density",
    "coverage": "coverage",
    "frechet_distance": "Fréchet distance",
    "centroid_distance": "distance to the class centroid",
    "label_agreement": "label agreement",
    "train_accuracy_on_reconstructions": "test accuracy, trained on reconstructions",
}
BOUNDED = {"precision", "recall", "coverage", "label_agreement", "train_accuracy_on_reconstructions"}


def sweep_curves(rows: list[dict], keys: Sequence[str], n_cols: int = 3) -> go.Figure:
    """One small line plot per metric over the start step t; metrics bounded by [0, 1] keep that range, so
    noise of a few thousandths does not look like a cliff."""
    n_rows = (len(keys) + n_cols - 1) // n_cols
    fig = make_subplots(rows=n_rows, cols=n_cols, subplot_titles=[METRIC_TITLES.get(k, k) for k in keys],
                        vertical_spacing=0.32 / max(n_rows, 1) + 0.04)
    t = [row["t"] for row in rows]
    for i, key in enumerate(keys):
        r, c = i // n_cols + 1, i % n_cols + 1
        fig.add_trace(go.Scatter(x=t, y=[row.get(key) for row in rows], mode="lines+markers", name=key,
                                 marker_color=PALETTE[i % len(PALETTE)], showlegend=False), row=r, col=c)
        fig.update_yaxes(title_text=key.replace("_", " "), row=r, col=c,
                         **({"range": [0, 1.05]} if key in BOUNDED else {"rangemode": "tozero"}))
    fig.update_xaxes(title_text="start step t")
    fig.update_layout(height=300 * n_rows, margin=dict(l=10, r=10, t=40, b=10))
    return fig


def drift_scatter(original_xy: np.ndarray, reconstruction_xy: np.ndarray, t_values: Sequence[int],
                  labels: np.ndarray, class_names: Sequence[str]) -> go.Figure:
    """Originals (large circles, one legend entry per class) joined by grey lines to their reconstructions at
    increasing t (crosses shaded from light to dark grey-blue as t grows)."""
    fig = go.Figure()
    n = len(original_xy)
    xs, ys = [], []
    for i in range(n):
        path = np.vstack([original_xy[i:i + 1], reconstruction_xy[:, i]])
        xs += list(path[:, 0]) + [None]
        ys += list(path[:, 1]) + [None]
    fig.add_trace(go.Scattergl(x=xs, y=ys, mode="lines", line=dict(color="rgba(120,120,120,0.35)", width=1),
                               name="drift path", hoverinfo="skip"))
    for c in np.unique(labels):
        m = labels == c
        fig.add_trace(go.Scattergl(x=original_xy[m, 0], y=original_xy[m, 1], mode="markers",
                                   name=f"original · class {class_names[c]}", legendgroup="originals",
                                   legendgrouptitle_text="originals" if c == labels.min() else None,
                                   marker=dict(size=10, color=PALETTE[c % len(PALETTE)],
                                               line=dict(color="black", width=1)),
                                   hovertext=f"original, class {class_names[c]}", hoverinfo="text"))
    for j, t in enumerate(t_values):
        level = 0.25 + 0.75 * j / max(1, len(t_values) - 1)
        color = f"rgba({int(40 + 160 * (1 - level))}, {int(60 + 140 * (1 - level))}, {int(90 + 120 * (1 - level))}, 1)"
        fig.add_trace(go.Scattergl(
            x=reconstruction_xy[j, :, 0], y=reconstruction_xy[j, :, 1], mode="markers", name=f"t = {t}",
            legendgroup="reconstructions", legendgrouptitle_text="reconstructions" if j == 0 else None,
            marker=dict(size=6, symbol="x", color=color),
            hovertext=[f"t = {t}, class {class_names[c]}" for c in labels], hoverinfo="text"))
    fig.update_layout(height=560, margin=dict(l=10, r=10, t=30, b=10), legend=dict(groupclick="toggleitem"))
    _axis_titles(fig, "PC")
    return fig


def run_curves(histories: dict[str, dict[str, list[tuple[int, float]]]], keys: Sequence[str],
               n_cols: int = 2, titles: dict[str, str] | None = None) -> go.Figure:
    """One subplot per metric key (titled ``titles[key]`` where given), one line per run
    (``{run_name: {key: [(step, value)]}}``), all on one epoch axis; a lone point is drawn larger."""
    titles = titles or {}
    n_rows = max(1, (len(keys) + n_cols - 1) // n_cols)
    fig = make_subplots(rows=n_rows, cols=n_cols, subplot_titles=[titles.get(k, k) for k in keys],
                        shared_xaxes="all")
    for r, (name, history) in enumerate(histories.items()):
        color = PALETTE[r % len(PALETTE)]
        for i, key in enumerate(keys):
            series = history.get(key, [])
            fig.add_trace(go.Scatter(x=[s for s, _ in series], y=[v for _, v in series], mode="lines+markers",
                                     name=name, legendgroup=name, showlegend=i == 0,
                                     marker=dict(size=9 if len(series) == 1 else 4), line=dict(color=color)),
                          row=i // n_cols + 1, col=i % n_cols + 1)
    fig.update_xaxes(title_text="epoch")
    fig.update_layout(height=280 * n_rows, margin=dict(l=10, r=10, t=40, b=10))
    return fig


def reference_scatter(probe_xy: np.ndarray, probe_labels: np.ndarray, mu_xy: np.ndarray, mu_bar_xy: np.ndarray,
                      reference_xy: np.ndarray, reference_labels: np.ndarray,
                      class_names: Sequence[str]) -> go.Figure:
    """One epoch of AdaRand: probe features (dots), references z (crosses), μ (stars) and μ̄ (diamonds), all in the
    colour of their class; the legend explains each marker once."""
    fig = go.Figure()
    for c in range(len(class_names)):
        color = PALETTE[c % len(PALETTE)]
        p, r = probe_labels == c, reference_labels == c
        fig.add_trace(go.Scattergl(x=probe_xy[p, 0], y=probe_xy[p, 1], mode="markers", name=f"class {class_names[c]}",
                                   legendgroup=str(c), marker=dict(color=color, size=6, opacity=0.6),
                                   hovertext=f"probe feature g(x), class {class_names[c]}", hoverinfo="text"))
        fig.add_trace(go.Scattergl(x=reference_xy[r, 0], y=reference_xy[r, 1], mode="markers", legendgroup=str(c),
                                   showlegend=False, marker=dict(color=color, size=7, symbol="x-thin",
                                                                 line=dict(color=color, width=1.5)),
                                   hovertext=f"reference z, class {class_names[c]}", hoverinfo="text"))
    colors = [PALETTE[c % len(PALETTE)] for c in range(len(mu_xy))]
    fig.add_trace(go.Scatter(x=mu_xy[:, 0], y=mu_xy[:, 1], mode="markers+text", name="μ (prior mean)",
                             text=list(class_names), textposition="top center",
                             marker=dict(size=16, symbol="star", color=colors, line=dict(color="black", width=1)),
                             hovertext=[f"μ, class {n}" for n in class_names], hoverinfo="text"))
    fig.add_trace(go.Scatter(x=mu_bar_xy[:, 0], y=mu_bar_xy[:, 1], mode="markers", name="μ̄ (running class mean)",
                             marker=dict(size=11, symbol="diamond-open", color=colors, line=dict(width=2.5)),
                             hovertext=[f"μ̄, class {n}" for n in class_names], hoverinfo="text"))
    # legend-only entries for the per-class markers drawn above without a legend entry of their own
    for name, symbol in (("reference z ~ N(μ_y, σ_y²)", "x-thin"), ("probe feature g(x)", "circle")):
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=name,
                                 marker=dict(symbol=symbol, size=9, color="#555", line=dict(color="#555", width=1.5))))
    fig.update_layout(height=560, margin=dict(l=10, r=10, t=30, b=10))
    _axis_titles(fig, "PC")
    return fig


def latent_scatter(real_xy: np.ndarray, real_labels: np.ndarray, random_xy: np.ndarray, selected_xy: np.ndarray,
                   classes: np.ndarray, class_names: Sequence[str]) -> go.Figure:
    """Real features (faint), samples of random latents (circles) and of meta-selected latents (stars), with a
    line from each random sample to its selected counterpart."""
    fig = go.Figure()
    fig.add_trace(go.Scattergl(x=real_xy[:, 0], y=real_xy[:, 1], mode="markers", name="real",
                               marker=dict(size=5, color=[PALETTE[c % len(PALETTE)] for c in real_labels],
                                           opacity=0.25),
                               hovertext=[f"real, class {class_names[c]}" for c in real_labels], hoverinfo="text"))
    xs, ys = [], []
    for a, b in zip(random_xy, selected_xy):
        xs += [a[0], b[0], None]
        ys += [a[1], b[1], None]
    fig.add_trace(go.Scattergl(x=xs, y=ys, mode="lines", line=dict(color="rgba(90,90,90,0.5)", width=1),
                               name="u → F_ω(u)", hoverinfo="skip"))
    colors = [PALETTE[c % len(PALETTE)] for c in classes]
    names = [class_names[c] for c in classes]
    fig.add_trace(go.Scattergl(x=random_xy[:, 0], y=random_xy[:, 1], mode="markers", name="G(u, c): random latent",
                               marker=dict(size=9, color=colors, symbol="circle-open", line=dict(width=2)),
                               hovertext=[f"random latent, class {n}" for n in names], hoverinfo="text"))
    fig.add_trace(go.Scattergl(x=selected_xy[:, 0], y=selected_xy[:, 1], mode="markers",
                               name="G(F_ω(u), c): meta-selected", marker=dict(size=12, color=colors, symbol="star",
                                                                             line=dict(color="black", width=1)),
                               hovertext=[f"meta-selected, class {n}" for n in names], hoverinfo="text"))
    fig.update_layout(height=520, margin=dict(l=10, r=10, t=30, b=10))
    _axis_titles(fig, "PC")
    return fig


def uncovered_curves(rows: list[dict], class_names: Sequence[str]) -> go.Figure:
    """Share of each class's real images outside every synthetic k-NN ball (``uncovered_share``) over t."""
    fig = go.Figure()
    t = [row["t"] for row in rows]
    for c, name in enumerate(class_names):
        fig.add_trace(go.Scatter(x=t, y=[row["uncovered_share"][c] for row in rows], mode="lines+markers",
                                 name=str(name), marker_color=PALETTE[c % len(PALETTE)]))
    fig.update_layout(title="Coverage holes: share of each class's real images no reconstruction comes near",
                      xaxis_title="start step t", yaxis_title="uncovered share", yaxis_range=[0, 1.05],
                      height=360, margin=dict(l=10, r=10, t=50, b=10))
    return fig


def quality_chart(rows: list[dict], uses_generator: set[str] | frozenset[str]) -> go.Figure:
    """Test accuracy against the generator's class fidelity: one line per method and setting of ``rows``
    (``summarize_runs`` rows: ``method``, ``per_class``, ``generator_fidelity``, ``test_accuracy_mean``/``_std``,
    ``runs``), with ± one sample std; a method outside ``uses_generator`` (CE) is one dashed level per setting, its
    runs pooled, since no generator touches it."""
    fig = go.Figure()
    measured = [r for r in rows if r.get("generator_fidelity") is not None]
    xs = sorted({100 * r["generator_fidelity"] for r in measured})
    lines: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        lines.setdefault((r["method"], str(r["per_class"])), []).append(r)
    for i, ((method, per_class), members) in enumerate(sorted(lines.items())):
        color = PALETTE[i % len(PALETTE)]
        name = f"{method}, {per_class} / class"
        if method not in uses_generator:
            n = sum(r["runs"] for r in members)
            mean = sum(r["test_accuracy_mean"] * r["runs"] for r in members) / max(n, 1)
            fig.add_trace(go.Scatter(x=[xs[0], xs[-1]] if xs else [], y=[100 * mean] * (2 if xs else 0),
                                     mode="lines", name=f"{name} ({n} runs)", line=dict(color=color, dash="dash")))
            continue
        points = sorted((r for r in members if r.get("generator_fidelity") is not None),
                        key=lambda r: r["generator_fidelity"])
        if not points:
            continue
        fig.add_trace(go.Scatter(
            x=[100 * r["generator_fidelity"] for r in points], y=[100 * r["test_accuracy_mean"] for r in points],
            error_y=dict(type="data", visible=True, array=[  # no bar for a single run (its std is nan)
                None if r["test_accuracy_std"] != r["test_accuracy_std"] else 100 * r["test_accuracy_std"]
                for r in points]),
            text=[f"{r['generator']}: {r['runs']} runs" for r in points], mode="lines+markers", name=name,
            line=dict(color=color)))
    fig.update_xaxes(title_text="generator class fidelity (%)")
    fig.update_yaxes(title_text="test accuracy at best val loss (%)")
    fig.update_layout(height=380, margin=dict(l=10, r=10, t=30, b=10))
    return fig
