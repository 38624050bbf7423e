"""The claims table: each claim of the papers judged on our own runs as reproduced / not reproduced / reversed.

Input is the grid of ``experiments/reproduce.py`` — one row per run with ``init``, ``regime``, ``method``,
``per_class``, ``seed``, ``test_accuracy`` and ``seconds`` — and, for the reverse-step claim, sweep rows
(``t``, ``coverage``, ``recall``) per embedding. Two means differ only when their gap exceeds
``max(2 standard errors, 0.5 points)``; a claim with no runs to judge it is "not tested". The same
rendering serves the README (markdown), ``genreg_core/analysis/claims.json`` and the Home page.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from genreg_core.training.methods import GENERATOR_METHODS

Verdict = Literal["reproduced", "not reproduced", "reversed", "not tested"]
Comparison = Literal["higher", "lower", "tie"]
CLAIMS_PATH = Path(__file__).resolve().parent / "claims.json"
MIN_GAP = 0.005  # half a point of accuracy: smaller gaps are ties whatever the spread
DIVERSITY_DROP = 0.05  # coverage or recall must fall (rise) by this much from the smallest to the largest t
MODEST_COST = 1.5  # "modest cost": at most this many times CE's wall time per run

Row = dict[str, Any]


@dataclass
class ClaimResult:
    key: str  # stable id
    claim: str  # the papers' claim, in words
    verdict: Verdict
    numbers: str  # the numbers behind the verdict, in words
    setting: str  # where they come from
    page: str  # url path of the app page where it can be seen
    page_title: str
    details: dict[str, Any] = field(default_factory=dict)  # the same numbers, machine-readable


def compare(a: list[float], b: list[float]) -> Comparison:
    """``a`` vs ``b``: higher / lower when the gap of the means exceeds max(2 SE, MIN_GAP), else tie."""
    def var(x: list[float]) -> float:
        return float(np.var(x, ddof=1)) if len(x) > 1 else 0.0

    gap = float(np.mean(a) - np.mean(b))
    margin = max(2 * math.sqrt(var(a) / len(a) + var(b) / len(b)), MIN_GAP)
    return "higher" if gap > margin else "lower" if gap < -margin else "tie"


def _cells(rows: list[Row]) -> dict[tuple, list[float]]:
    """(protocol, regime, method, per_class) -> test accuracies, the protocol being "init, E ep" (runs of different
    lengths are never compared); methods without a generator count under every regime."""
    regimes = sorted({r["regime"] for r in rows})
    cells: dict[tuple, list[float]] = {}
    for r in rows:
        protocol = f"{r['init']}, {r['epochs']} ep"
        for regime in ([r["regime"]] if r["method"] in GENERATOR_METHODS else regimes):
            cells.setdefault((protocol, regime, r["method"], r["per_class"]), []).append(r["test_accuracy"])
    return cells


def _pct(x: list[float]) -> str:
    return f"{100 * np.mean(x):.1f}"


def _settings(cells: dict[tuple, list[float]], *methods: str) -> list[tuple]:
    """(init, regime, per_class) where every one of ``methods`` has runs."""
    keys = {(i, g, n) for (i, g, m, n) in cells if m == methods[0]}
    return sorted(k for k in keys if all((k[0], k[1], m, k[2]) in cells for m in methods))


def judge_gda_degradation(rows: list[Row]) -> ClaimResult:
    """"Naive GDA can degrade accuracy and MGR avoids it" (Yamaguchi et al., NeurIPS 2023)."""
    cells = _cells(rows)
    settings = _settings(cells, "ce", "gda")
    cmp = {s: compare(cells[(s[0], s[1], "gda", s[2])], cells[(s[0], s[1], "ce", s[2])]) for s in settings}
    degraded = [s for s in settings if cmp[s] == "lower"]
    with_mgr = [s for s in degraded if (s[0], s[1], "mgr", s[2]) in cells]
    mgr_ok = [s for s in with_mgr
              if compare(cells[(s[0], s[1], "mgr", s[2])], cells[(s[0], s[1], "ce", s[2])]) != "lower"]
    if not settings:
        verdict: Verdict = "not tested"
    elif not degraded:
        verdict = "reversed" if all(c == "higher" for c in cmp.values()) else "not reproduced"
    elif not with_mgr:
        verdict = "not tested"
    else:
        verdict = "reproduced" if len(mgr_ok) == len(with_mgr) else "not reproduced"
    parts = []
    for s in settings:
        mgr = cells.get((s[0], s[1], "mgr", s[2]))
        parts.append(f"{s[0]}/{s[1]}/{s[2]} pc: GDA {_pct(cells[(s[0], s[1], 'gda', s[2])])} vs CE "
                     f"{_pct(cells[(s[0], s[1], 'ce', s[2])])}" + (f", MGR {_pct(mgr)}" if mgr else ""))
    return ClaimResult(
        "gda_degrades_mgr_avoids", "Naive GDA can degrade accuracy and MGR avoids it", verdict,
        "; ".join(parts) or "no runs", f"GDA lower than CE in {len(degraded)} of {len(settings)} settings; MGR run in "
        f"{len(with_mgr)} of those, not lower than CE in {len(mgr_ok)}", "training_runs", "Training runs",
        {"settings": [list(s) for s in settings], "gda_vs_ce": [cmp[s] for s in settings],
         "degraded": [list(s) for s in degraded], "mgr_not_lower": [list(s) for s in mgr_ok]})


def judge_mgr_small_data(rows: list[Row]) -> ClaimResult:
    """"MGR helps most when data is smallest": MGR − CE at the smallest N against the largest N, per protocol."""
    cells = _cells(rows)
    groups: dict[tuple, list[int]] = {}
    for init, regime, n in _settings(cells, "ce", "mgr"):
        groups.setdefault((init, regime), []).append(n)
    verdicts, parts, details = [], [], {}
    for (init, regime), ns in sorted(groups.items()):
        if len(ns) < 2:
            continue
        small, large = min(ns), max(ns)
        gain = {n: float(np.mean(cells[(init, regime, "mgr", n)]) - np.mean(cells[(init, regime, "ce", n)]))
                for n in (small, large)}
        at_small = compare(cells[(init, regime, "mgr", small)], cells[(init, regime, "ce", small)])
        at_large = compare(cells[(init, regime, "mgr", large)], cells[(init, regime, "ce", large)])
        if at_small == "higher" and gain[small] > gain[large]:
            verdicts.append("reproduced")
        elif at_small == "lower" or (at_large == "higher" and gain[large] > gain[small]):
            verdicts.append("reversed")
        else:
            verdicts.append("not reproduced")
        parts.append(f"{init}/{regime}: MGR − CE {100 * gain[small]:+.1f} points at {small} pc ({at_small}), "
                     f"{100 * gain[large]:+.1f} at {large} pc ({at_large})")
        details[f"{init}/{regime}"] = {"small": small, "large": large, "gain_small": gain[small],
                                       "gain_large": gain[large], "verdict": verdicts[-1]}
    return ClaimResult("mgr_small_data", "MGR helps most when data is smallest", _combine(verdicts),
                       "; ".join(parts) or "no runs", "MGR and CE at two or more per-class settings, per init/regime",
                       "meta_latents", "Meta-selected latents", details)


def judge_adarand_finetuning(rows: list[Row]) -> ClaimResult:
    """"AdaRand beats RandReg and CE in fine-tuning at modest cost" (Yamaguchi et al., CVPR 2024): pretrained init."""
    tuned = [r for r in rows if r["init"] == "pretrained"]
    cells = _cells(tuned)
    settings = sorted({(i, n) for (i, g, n) in _settings(cells, "ce", "randreg", "adarand")})
    if not settings:
        return ClaimResult("adarand_finetuning", "AdaRand beats RandReg and CE in fine-tuning at modest cost",
                           "not tested", "no fine-tuning runs of CE, RandReg and AdaRand", "init = pretrained",
                           "reference_vectors", "AdaRand references")
    regime = sorted({g for (_, g, m, _) in cells})[0]
    wins, losses, parts = 0, 0, []
    for init, n in settings:
        ada, ce, rr = (cells[(init, regime, m, n)] for m in ("adarand", "ce", "randreg"))
        vs = (compare(ada, ce), compare(ada, rr))
        wins += vs == ("higher", "higher")
        losses += "lower" in vs
        parts.append(f"{n} pc: AdaRand {_pct(ada)}, RandReg {_pct(rr)}, CE {_pct(ce)}")
    cost = _mean_cost(tuned, "adarand") / _mean_cost(tuned, "ce")
    if wins > len(settings) / 2 and losses == 0 and cost <= MODEST_COST:
        verdict: Verdict = "reproduced"
    elif losses > len(settings) / 2:
        verdict = "reversed"
    else:
        verdict = "not reproduced"
    return ClaimResult("adarand_finetuning", "AdaRand beats RandReg and CE in fine-tuning at modest cost", verdict,
                       "; ".join(parts) + f"; time {cost:.2f}× CE",
                       f"init = pretrained; AdaRand above both in {wins} of {len(settings)} settings, below either in "
                       f"{losses}", "reference_vectors", "AdaRand references",
                       {"wins": wins, "losses": losses, "settings": len(settings), "cost_ratio": float(cost)})


def _mean_cost(rows: list[Row], method: str) -> float:
    """Mean CPU seconds per run of ``method`` (wall seconds when a row has no CPU time: loaded machines distort it)."""
    return float(np.mean([r.get("cpu_seconds", r["seconds"]) for r in rows if r["method"] == method]))


def judge_reverse_step(sweeps: dict[str, list[Row]]) -> ClaimResult:
    """"A larger reverse start step loses diversity" (Yamaguchi & Fukuda 2023): coverage / recall vs t."""
    verdicts, parts, details = [], [], {}
    for name, rows in sorted(sweeps.items()):
        if len(rows) < 2:
            continue
        first, last = min(rows, key=lambda r: r["t"]), max(rows, key=lambda r: r["t"])
        drops = {m: first[m] - last[m] for m in ("coverage", "recall")}
        if max(drops.values()) >= DIVERSITY_DROP and min(drops.values()) > -DIVERSITY_DROP:
            verdicts.append("reproduced")
        elif min(drops.values()) <= -DIVERSITY_DROP and max(drops.values()) < DIVERSITY_DROP:
            verdicts.append("reversed")
        else:
            verdicts.append("not reproduced")
        parts.append(f"{name}: coverage {first['coverage']:.2f} → {last['coverage']:.2f}, recall "
                     f"{first['recall']:.2f} → {last['recall']:.2f} (t {first['t']} → {last['t']})")
        details[name] = {"t": [first["t"], last["t"]], **{f"{m}_drop": v for m, v in drops.items()}}
    return ClaimResult("reverse_step_diversity", "A larger reverse start step loses diversity", _combine(verdicts),
                       "; ".join(parts) or "no sweep", f"reconstructions from t vs real features; a fall of "
                       f"≥ {DIVERSITY_DROP} in coverage or recall counts", "reverse_step", "Reverse start step",
                       details)


def _combine(verdicts: list[str]) -> Verdict:
    """One verdict over several settings: reproduced (reversed) when some say so and none say the opposite."""
    if not verdicts:
        return "not tested"
    if "reproduced" in verdicts and "reversed" not in verdicts:
        return "reproduced"
    if "reversed" in verdicts and "reproduced" not in verdicts:
        return "reversed"
    return "not reproduced"


def judge_claims(rows: list[Row], sweeps: dict[str, list[Row]] | None = None) -> list[ClaimResult]:
    """All four claims, in the issue's order."""
    return [judge_gda_degradation(rows), judge_mgr_small_data(rows), judge_adarand_finetuning(rows),
            judge_reverse_step(sweeps or {})]


def claims_markdown(claims: list[ClaimResult], link: bool = False) -> str:
    """A markdown table; ``link`` turns the page column into links to the app's pages."""
    lines = ["| claim | verdict | numbers | setting | see it on |", "|---|---|---|---|---|"]
    for c in claims:
        page = f"[{c.page_title}](/{c.page})" if link else c.page_title
        lines.append(f"| {c.claim} | **{c.verdict}** | {c.numbers} | {c.setting} | {page} |")
    return "\n".join(lines) + "\n"


README_START = "<!-- claims: written by python -m experiments.reproduce --report-only; do not edit -->"
README_END = "<!-- /claims -->"


def claims_summary(claims: list[ClaimResult], details: str) -> str:
    """The verdicts alone, one line each, for the README; ``details`` is the link to the table with the numbers."""
    lines = ["| claim | verdict | see it on |", "|---|---|---|"]
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


def save_claims(claims: list[ClaimResult], path: str | Path, meta: dict[str, Any] | None = None) -> None:
    Path(path).write_text(json.dumps({"meta": meta or {}, "claims": [asdict(c) for c in claims]}, indent=1) + "\n")


def load_claims(path: str | Path = CLAIMS_PATH) -> tuple[list[ClaimResult], dict[str, Any]]:
    """The claims and their metadata from JSON; ``ValueError`` when the file is missing or malformed."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"no claims table at {path}: run python -m experiments.reproduce")
    try:
        raw = json.loads(path.read_text())
        return [ClaimResult(**c) for c in raw["claims"]], raw.get("meta", {})
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not a claims table: {exc}") from exc
