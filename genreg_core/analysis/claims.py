"""The claims table: each claim of the papers judged on our own runs, by paired statistics over seeds.

Input is the grid of ``experiments/reproduce.py`` — one row per run with ``init``, ``regime``, ``method``,
``per_class``, ``seed``, ``test_accuracy`` (and ``set``: the config overrides of the run, so MGR with
``meta_val_budget=extra`` is its own method) — and, for the reverse-step claim, sweep rows (``t``, ``seed``,
``coverage``, ``recall``, ``train_accuracy_on_reconstructions``) per sweep. Every comparison pairs two methods on
the same seeds (same labelled subset, same initialisation, same noise; ``genreg_core.evaluation.statistics``):
the mean paired difference with a 95 % Student-t interval, judged against a practical threshold with a stated
tolerance as *reproduced*, *not reproduced*, *reversed* or *inconclusive* (the interval straddles the
threshold, or fewer than 5 seeds pair: a missing cell is inconclusive, never silently dropped). The same
rendering serves the README (markdown), ``genreg_core/analysis/claims.json`` (one entry per dataset) and the
Home page.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from genreg_core.evaluation.statistics import (
    CONFIDENCE,
    MIN_PAIRS,
    Direction,
    Paired,
    Threshold,
    Verdict,
    all_of,
    any_of,
    compare_independent,
    compare_paired,
    format_interval,
    judge,
)
from genreg_core.training.methods import GENERATOR_METHODS

CLAIMS_PATH = Path(__file__).resolve().parent / "claims.json"
# δ = 1 point of test accuracy; the tolerance (0.1 point) is below one test image of 360 (0.28 point), so only
# floating-point noise, never a real difference, falls inside it
ACCURACY = Threshold(0.01, 0.001, "test accuracy")
DIVERSITY = Threshold(0.05, 0.001, "coverage / recall")  # one image of 200 moves coverage by 0.005
MODEST_COST = 1.5  # "modest cost": at most this many times CE's CPU time per run
EXTRA_BUDGET = "meta_val_budget=extra"  # the override that gives MGR CE's N per class plus B_val
LOW_DATA = 10  # "low-data regime": at most this many labelled images per class

Row = dict[str, Any]
Cells = dict[tuple, dict[int, float]]  # (protocol, regime, method key, per_class) -> {seed: test accuracy}


@dataclass
class ClaimResult:
    key: str  # stable id
    claim: str  # the papers' claim, in words
    verdict: Verdict
    numbers: str  # the paired numbers behind the verdict, "; "-separated by setting
    setting: str  # where they come from and how they are judged
    page: str  # url path of the app page where it can be seen
    page_title: str
    details: dict[str, Any] = field(default_factory=dict)  # the same numbers, machine-readable


def method_key(row: Row) -> str:
    """The method of a run with its config overrides and a non-default generator: ``mgr``,
    ``mgr[meta_val_budget=extra]``, ``gda[generator=shipped-early]``."""
    overrides = list(row.get("set") or []) + ([f"generator={row['generator']}"] if row.get("generator") else [])
    return row["method"] + (f"[{', '.join(sorted(overrides))}]" if overrides else "")


def grid_cells(rows: list[Row], generator_methods: frozenset[str] | set[str] = frozenset(GENERATOR_METHODS)) -> Cells:
    """Per cell the test accuracy by seed; the protocol is "init, E ep" (runs of different lengths are never
    compared); methods without a generator (not in ``generator_methods``) count under every regime. A seed run
    twice in a cell raises ``ValueError`` (a pairing must be one run per seed)."""
    regimes = sorted({r["regime"] for r in rows})
    cells: Cells = {}
    for r in rows:
        protocol = f"{r['init']}, {r['epochs']} ep"
        for regime in ([r["regime"]] if r["method"] in generator_methods else regimes):
            cell = cells.setdefault((protocol, regime, method_key(r), r["per_class"]), {})
            if r["seed"] in cell:
                raise ValueError(f"seed {r['seed']} appears twice in the cell {protocol} / {regime} / "
                                 f"{method_key(r)} / {r['per_class']} per class")
            cell[r["seed"]] = r["test_accuracy"]
    return cells


@dataclass
class Comparison:
    """One paired comparison in one setting, with its verdict."""

    setting: tuple  # (protocol, regime, per_class)
    a: str
    b: str
    paired: Paired
    verdict: Verdict
    direction: Direction

    def text(self) -> str:
        protocol, regime, n = self.setting
        return f"{protocol}/{regime}/{n} pc: {self.a} − {self.b} {format_interval(self.paired)} → {self.verdict}"

    def as_dict(self) -> dict:
        return {"setting": list(self.setting), "a": self.a, "b": self.b, "direction": self.direction,
                "verdict": self.verdict, **self.paired.as_dict()}


def compare_methods(cells: Cells, a: str, b: str, direction: Direction = "higher", threshold: Threshold = ACCURACY,
                    keep: Callable[[tuple], bool] = lambda s: True) -> list[Comparison]:
    """``a − b`` in every setting where either has runs (a missing side pairs no seed: inconclusive)."""
    settings = sorted({(p, g, n) for (p, g, m, n) in cells if m in (a, b) and keep((p, g, n))})
    out = []
    for p, g, n in settings:
        paired = compare_paired(cells.get((p, g, a, n), {}), cells.get((p, g, b, n), {}))
        out.append(Comparison((p, g, n), a, b, paired, judge(paired, threshold, direction), direction))
    return out


def _rule(threshold: Threshold, direction: str = "higher") -> str:
    sign = ">" if direction == "higher" else "<"
    scale = 100 if threshold is ACCURACY else 1
    unit = " points" if threshold is ACCURACY else ""
    return (f"paired by seed, mean difference with a {CONFIDENCE:.0%} t-interval; reproduced when the interval is "
            f"{sign} {'+' if direction == 'higher' else '−'}{scale * threshold.value:g}{unit} (tolerance "
            f"{scale * threshold.tolerance:g}{unit}), inconclusive when it straddles that or fewer than {MIN_PAIRS} "
            f"seeds pair")


def _claim(key: str, claim: str, verdict: Verdict, comparisons: list[Comparison], setting: str, page: str,
           title: str, extra: dict | None = None, lines: list[str] | None = None) -> ClaimResult:
    numbers = "; ".join([c.text() for c in comparisons] + (lines or [])) or "not tested: no runs"
    return ClaimResult(key, claim, verdict, numbers, setting, page, title,
                       {"comparisons": [c.as_dict() for c in comparisons], **(extra or {})})


def judge_gda_degradation(cells: Cells) -> ClaimResult:
    """"Naive GDA can degrade accuracy" (Yamaguchi et al., NeurIPS 2023): GDA below CE by δ in some setting."""
    comparisons = compare_methods(cells, "gda", "ce", "lower")
    return _claim("gda_degrades", "Naive GDA can degrade accuracy", any_of([c.verdict for c in comparisons]),
                  comparisons, f"GDA − CE in every setting run; reproduced when some setting shows a loss; "
                  f"{_rule(ACCURACY, 'lower')}", "training_runs", "Training runs")


def judge_mgr_beats_gda(cells: Cells) -> ClaimResult:
    """"MGR beats naive GDA" — the MGR paper's headline — on equal total labels; CE-equal labels shown too."""
    fair = compare_methods(cells, "mgr", "gda")
    extra_key = f"mgr[{EXTRA_BUDGET}]"
    extra = [c for c in compare_methods(cells, extra_key, "gda") if (c.setting[0], c.setting[1], extra_key,
                                                                     c.setting[2]) in cells]
    return _claim("mgr_beats_gda", "MGR beats naive GDA (the MGR paper's headline)", all_of([c.verdict for c in fair]),
                  fair, "MGR − GDA, same generator; the verdict is on equal total labels (MGR's B_val held out of its "
                  "N per class, so its cross-entropy sees fewer); rows marked "
                  f"{extra_key} give MGR CE's N per class plus B_val (more labels in all) and do not enter the "
                  f"verdict; {_rule(ACCURACY)}", "meta_latents", "Meta-selected latents",
                  {"extra_budget": [c.as_dict() for c in extra]}, [c.text() for c in extra])


def judge_mgr_small_data(cells: Cells) -> ClaimResult:
    """"MGR helps most when data is smallest": the per-seed gain MGR − CE at the smallest N against the largest N
    (different subsets, so the two gains are compared unpaired, Welch's t)."""
    groups: dict[tuple, list[int]] = {}
    for p, g, m, n in cells:
        if m == "mgr" and (p, g, "ce", n) in cells:
            groups.setdefault((p, g), []).append(n)
    verdicts, lines, details = [], [], {}
    for (p, g), ns in sorted(groups.items()):
        if len(ns) < 2:
            continue
        small, large = min(ns), max(ns)
        gains = {}
        for n in (small, large):
            mgr, ce = cells[(p, g, "mgr", n)], cells[(p, g, "ce", n)]
            gains[n] = [mgr[s] - ce[s] for s in sorted(set(mgr) & set(ce))]
        diff = compare_independent(gains[small], gains[large])
        verdict = judge(diff, ACCURACY)
        verdicts.append(verdict)
        lines.append(f"{p}/{g}: MGR − CE {100 * np.mean(gains[small]):+.1f} at {small} pc, "
                     f"{100 * np.mean(gains[large]):+.1f} at {large} pc (points); gain({small}) − gain({large}) "
                     f"{format_interval(diff)} → {verdict}")
        details[f"{p}/{g}"] = {"small": small, "large": large, "verdict": verdict, **diff.as_dict()}
    return ClaimResult("mgr_small_data", "MGR helps most when data is smallest", all_of(verdicts),
                       "; ".join(lines) or "not tested: MGR and CE at fewer than two per-class settings",
                       "gain MGR − CE paired by seed at the smallest and the largest N, compared with Welch's "
                       f"{CONFIDENCE:.0%} t-interval (n = the smaller number of seeds); reproduced when the gain at "
                       f"the smallest N exceeds the gain at the largest by more than {100 * ACCURACY.value:g} point "
                       f"(tolerance {100 * ACCURACY.tolerance:g}); inconclusive under {MIN_PAIRS} seeds",
                       "meta_latents", "Meta-selected latents", details)


def judge_adarand_finetuning(cells: Cells, rows: list[Row]) -> ClaimResult:
    """"AdaRand beats RandReg and CE in fine-tuning at modest cost" (Yamaguchi et al., CVPR 2024): pretrained."""
    def tuned(s: tuple) -> bool:
        return s[0].startswith("pretrained")

    comparisons = [c for b in ("ce", "randreg") for c in compare_methods(cells, "adarand", b, keep=tuned)]
    regimes = sorted({c.setting[1] for c in comparisons})
    comparisons = [c for c in comparisons if c.setting[1] == (regimes[0] if regimes else None)]  # no generator
    verdict = all_of([c.verdict for c in comparisons])
    runs = [r for r in rows if r["init"] == "pretrained"]
    cost = _mean_cost(runs, "adarand") / _mean_cost(runs, "ce") if comparisons else float("nan")
    if verdict == "reproduced" and not cost <= MODEST_COST:
        verdict = "not reproduced"
    lines = [f"CPU time {cost:.2f}× CE (modest: ≤ {MODEST_COST}×)"] if comparisons else []
    return _claim("adarand_finetuning", "AdaRand beats RandReg and CE in fine-tuning at modest cost", verdict,
                  comparisons, f"init = pretrained; AdaRand − CE and AdaRand − RandReg in every setting, all must "
                  f"reproduce and the CPU time stay ≤ {MODEST_COST}× CE's; {_rule(ACCURACY)}", "reference_vectors",
                  "AdaRand references", {"cost_ratio": None if np.isnan(cost) else cost}, lines)


def _mean_cost(rows: list[Row], method: str) -> float:
    """Mean CPU seconds per run of ``method`` (wall seconds when a row has no CPU time)."""
    values = [r.get("cpu_seconds", r["seconds"]) for r in rows if r["method"] == method]
    return float(np.mean(values)) if values else float("nan")


SWEEP_METRICS = (("coverage", DIVERSITY), ("recall", DIVERSITY), ("train_accuracy_on_reconstructions", ACCURACY))


def judge_reverse_step(sweeps: dict[str, list[Row]]) -> ClaimResult:
    """"A larger reverse start step loses diversity and train-on-reconstruction accuracy" (Yamaguchi & Fukuda
    2023): per sweep, the value at the smallest t minus the value at the largest, paired by seed (each seed its own
    originals, noise draw and reference set); diversity = coverage or recall, and accuracy must fall."""
    verdicts, lines, details = [], [], {}
    for name, rows in sorted(sweeps.items()):
        ts = sorted({r["t"] for r in rows})
        if len(ts) < 2:
            continue
        first = {r.get("seed", 0): r for r in rows if r["t"] == ts[0]}
        last = {r.get("seed", 0): r for r in rows if r["t"] == ts[-1]}
        found: dict[str, Verdict] = {}
        for metric, threshold in SWEEP_METRICS:
            a = {s: r[metric] for s, r in first.items() if metric in r}
            b = {s: r[metric] for s, r in last.items() if metric in r}
            paired = compare_paired(a, b)
            found[metric] = judge(paired, threshold)
            scale = 100 if threshold is ACCURACY else 1
            lines.append(f"{name} t {ts[0]} → {ts[-1]}: {metric} falls by "
                         f"{format_interval(paired, scale, 1 if scale == 100 else 3)} → {found[metric]}")
            details[f"{name}/{metric}"] = {"t": [ts[0], ts[-1]], "verdict": found[metric], **paired.as_dict()}
        verdicts.append(all_of([any_of([found["coverage"], found["recall"]]),
                                found["train_accuracy_on_reconstructions"]]))
    return ClaimResult("reverse_step", "A larger reverse start step loses diversity and train-on-reconstruction "
                       "accuracy", all_of(verdicts), "; ".join(lines) or "not tested: no sweep",
                       f"reconstructions of test images (never seen by the generator) from the smallest and the "
                       f"largest t, paired by seed (originals, noise draw and disjoint reference set per seed); a "
                       f"fall of more than {DIVERSITY.value} in coverage or recall (tolerance {DIVERSITY.tolerance}) "
                       f"and of more than {100 * ACCURACY.value:g} point of train-on-reconstruction accuracy (scored "
                       f"on the val split) reproduces it; {CONFIDENCE:.0%} t-intervals, at least {MIN_PAIRS} seeds",
                       "reverse_step", "Reverse start step", details)


def judge_semantic_low_data(cells: Cells) -> ClaimResult:
    """"Latent semantic perturbations help in the low-data regime" (Yüksel et al., ICCV 2021): semantic − CE."""
    comparisons = compare_methods(cells, "semantic", "ce", keep=lambda s: s[2] is not None and s[2] <= LOW_DATA)
    return _claim("semantic_low_data", "Latent semantic perturbations help in the low-data regime",
                  all_of([c.verdict for c in comparisons]), comparisons,
                  f"semantic − CE at ≤ {LOW_DATA} images per class; {_rule(ACCURACY)}", "training_runs",
                  "Training runs")


def judge_gssl(cells: Cells) -> ClaimResult:
    """"GSSL's meta-optimized synthetic unlabelled data helps": GSSL − CE."""
    comparisons = compare_methods(cells, "gssl", "ce")
    return _claim("gssl_helps", "GSSL's meta-optimized synthetic unlabelled data helps",
                  all_of([c.verdict for c in comparisons]), comparisons,
                  f"GSSL − CE in every setting run (its B_val held out of its N per class); {_rule(ACCURACY)}",
                  "meta_latents", "Meta-selected latents")


def judge_claims(rows: list[Row], sweeps: dict[str, list[Row]] | None = None,
                 generator_methods: frozenset[str] | set[str] = frozenset(GENERATOR_METHODS)) -> list[ClaimResult]:
    """The seven claims, in the issue's order; ``generator_methods`` (from the method registry) says which
    methods use a generator (the others count under every generator regime)."""
    cells = grid_cells(rows, generator_methods)
    return [judge_gda_degradation(cells), judge_mgr_beats_gda(cells), judge_mgr_small_data(cells),
            judge_adarand_finetuning(cells, rows), judge_reverse_step(sweeps or {}), judge_semantic_low_data(cells),
            judge_gssl(cells)]


def claims_markdown(claims: list[ClaimResult], link: bool = False) -> str:
    """A markdown table; ``link`` turns the page column into links to the app's pages."""
    lines = ["Differences in points of test accuracy (coverage and recall in their own unit): mean paired "
             f"difference [{CONFIDENCE:.0%} t-interval] (n paired seeds); spreads are sample standard deviations "
             "(ddof = 1).", "", "| claim | verdict | numbers | setting | see it on |", "|---|---|---|---|---|"]
    for c in claims:
        page = f"[{c.page_title}](/{c.page})" if link else c.page_title
        lines.append(f"| {c.claim} | **{c.verdict}** | {c.numbers} | {c.setting} | {page} |")
    return "\n".join(lines) + "\n"


README_START = "<!-- claims: written by python -m experiments.reproduce --report-only; do not edit -->"
README_END = "<!-- /claims -->"


def claims_summary(claims: list[ClaimResult], details: str, dataset: str = "digits") -> str:
    """The verdicts alone, one line each, for the README; ``details`` is the link to the table with the numbers."""
    lines = [f"On **{dataset}**, paired over seeds (95 % t-intervals, a practical threshold with a stated tolerance; "
             "inconclusive when the interval straddles it or fewer than 5 seeds pair):", "",
             "| claim | verdict | see it on |", "|---|---|---|"]
    lines += [f"| {c.claim} | **{c.verdict}** | {c.page_title} |" for c in claims]
    return "\n".join(lines) + f"\n\nThe numbers and settings behind each verdict: [{details}]({details}).\n"


def write_readme_claims(readme: str | Path, summary: str) -> None:
    """Replace the README's generated claims block (between ``README_START`` and ``README_END``) with ``summary``;
    ``ValueError`` when the README has no such block."""
    path = Path(readme)
    text = path.read_text()
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        raise ValueError(f"{path} has no generated claims block ({README_START} … {README_END})")
    path.write_text(text[:start + len(README_START)] + "\n" + summary + text[end:])


def _read(path: Path) -> dict:
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not a claims table: {exc}") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("datasets"), dict):
        raise ValueError(f"{path} is not a claims table: no per-dataset 'datasets' object")
    return raw


def save_claims(claims: list[ClaimResult], path: str | Path, dataset: str = "digits",
                meta: dict[str, Any] | None = None) -> None:
    """Write ``dataset``'s claims into ``path`` (``{"datasets": {name: {"meta", "claims"}}}``), keeping the other
    datasets already there."""
    path = Path(path)
    raw = _read(path) if path.exists() else {"datasets": {}}
    raw["datasets"][dataset] = {"meta": meta or {}, "claims": [asdict(c) for c in claims]}
    path.write_text(json.dumps(raw, indent=1, allow_nan=False) + "\n")


def claim_datasets(path: str | Path = CLAIMS_PATH) -> list[str]:
    """The datasets ``path`` holds claims for; ``ValueError`` when the file is missing or malformed."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"no claims table at {path}: run python -m experiments.reproduce")
    return sorted(_read(path)["datasets"])


def load_claims(path: str | Path = CLAIMS_PATH, dataset: str = "digits") -> tuple[list[ClaimResult], dict[str, Any]]:
    """``dataset``'s claims and their metadata; ``ValueError`` when the file is missing or malformed, or holds no
    claims for ``dataset``."""
    known = claim_datasets(path)
    if dataset not in known:
        raise ValueError(f"{path} holds no claims for dataset {dataset!r} (it has: {', '.join(known) or 'none'})")
    entry = _read(Path(path))["datasets"][dataset]
    try:
        return [ClaimResult(**c) for c in entry["claims"]], entry.get("meta", {})
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not a claims table: {exc}") from exc
