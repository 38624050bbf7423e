"""Speed of the Fashion-MNIST default against the digits default on this machine, measured in one run (issue 16).

    python -m bench.bench_fashion [--mgr-epochs N] [--out bench/results/fashion_speed.md]

(a) Home's first render (open the lab, then its two grids: the real images and 6 generated per class with 50 DDIM
steps) and the Feature space first view (``compute_feature_space`` with ``first_view_config``: what the page
computes), Fashion ÷ digits, target ≤ 2×; (b) a 10-per-class CE fine-tuning run (``genreg train --init
pretrained``, 30 epochs, in-process, fresh GENREG_HOME), target < 20 s; (c) a 10-per-class MGR run, target
< 5 min; and how much faster ``evaluate``'s CPU batch of 128 is than 512 on each dataset's validation split
(ratio). ``--mgr-epochs N`` times N of MGR's 30 epochs and scales the training time to 30 (said so in the table).
Run it on an otherwise idle machine; the table records ``uptime``'s load.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

from genreg_app.feature_space import first_view_config
from genreg_core.analysis.feature_space import compute_feature_space
from genreg_core.config import DataConfig, SamplerConfig
from genreg_core.imaging import make_grid
from genreg_core.lab import open_lab

HOME_PER_CLASS = 6  # app_pages/home.py's PER_CLASS


def home_seconds(name: str) -> tuple[float, float, object]:
    """Seconds to open the lab and draw Home's grids, and to compute the Feature space first view."""
    start = time.perf_counter()
    lab = open_lab(DataConfig(name=name), None, "cpu")
    train, labels = lab.split.train, lab.dataset.labels
    real_idx = [train[labels[train] == c][:HOME_PER_CLASS] for c in range(lab.n_classes)]
    make_grid(lab.dataset.images[[int(i) for idx in real_idx for i in idx]], HOME_PER_CLASS, scale=3)
    fake, labels = lab.sample(HOME_PER_CLASS, SamplerConfig(), seed=0)
    make_grid(fake[labels.argsort(stable=True)], HOME_PER_CLASS, scale=3)
    home = time.perf_counter() - start
    start = time.perf_counter()
    compute_feature_space(lab, first_view_config(lab))
    return home, time.perf_counter() - start, lab


def train_seconds(name: str, method: str, epochs: int, home: Path) -> tuple[float, dict]:
    """Wall seconds of ``genreg train`` (10 per class, pretrained init) in this process, and its JSON line."""
    import contextlib
    import io

    from genreg_core.cli.main import main

    os.environ["GENREG_HOME"] = str(home)
    out = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(out):
        code = main(["train", "--dataset", name, "--method", method, "--per-class", "10", "--init", "pretrained",
                     "--epochs", str(epochs), "--device", "cpu", "--json"])
    seconds = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"genreg train --method {method} failed ({code})")
    return seconds, json.loads(out.getvalue().strip().splitlines()[-1])


def eval_batch_ratio(lab, batches: tuple[int, int] = (512, 128), repeats: int = 5) -> float:
    """Seconds to evaluate a fresh ConvNet on the validation split at ``batches[0]`` images a batch ÷ at
    ``batches[1]`` (``evaluate``'s CPU default), best of ``repeats``."""
    from genreg_core.config import FeatureConfig, TrainConfig
    from genreg_core.features.extractor import build_convnet
    from genreg_core.training.loop import evaluate

    config = TrainConfig()
    model = build_convnet(FeatureConfig(width=config.width, feature_dim=config.feature_dim), lab.dataset.channels,
                          lab.n_classes)
    images, labels = lab.dataset.images[lab.split.val], lab.dataset.labels[lab.split.val]
    best = []
    for batch in batches:
        evaluate(model, images, labels, batch)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            evaluate(model, images, labels, batch)
            times.append(time.perf_counter() - start)
        best.append(min(times))
    return best[0] / best[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mgr-epochs", type=int, default=30, help="MGR epochs to time (scaled to 30)")
    parser.add_argument("--out", type=Path, help="also write the table as markdown here")
    args = parser.parse_args()
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(load, flush=True)
    home_seconds("digits")  # warm-up: imports, torch's first kernels, the files in the page cache
    rows = []
    digits_home, digits_fs, digits_lab = home_seconds("digits")
    fashion_home, fashion_fs, fashion_lab = home_seconds("fashion-mnist")
    for what, d, f in (("Home first render (open the lab, real + generated grids)", digits_home, fashion_home),
                       ("Feature space first view (20 per class, DDIM 25)", digits_fs, fashion_fs)):
        rows.append((what, f"{d:.1f} s", f"{f:.1f} s", f"{f / d:.2f}×", "≤ 2×", "met" if f / d <= 2 else "missed"))
        print(rows[-1], flush=True)
    rows.append(("Evaluating the validation split: batch 512 ÷ batch 128 (`evaluate`'s CPU default)",
                 f"{eval_batch_ratio(digits_lab):.2f}×", f"{eval_batch_ratio(fashion_lab):.2f}×", "", "≥ 1×", ""))
    print(rows[-1], flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        ce_d, _ = train_seconds("digits", "ce", 30, Path(tmp) / "digits")
        ce_f, ce_payload = train_seconds("fashion-mnist", "ce", 30, Path(tmp) / "fashion")
        rows.append(("CE run, 10 per class, pretrained, 30 epochs (`genreg train`, wall)", f"{ce_d:.1f} s",
                     f"{ce_f:.1f} s", f"{ce_f / ce_d:.2f}×", "< 20 s", "met" if ce_f < 20 else "missed"))
        print(rows[-1], ce_payload, flush=True)
        mgr_f, mgr_payload = train_seconds("fashion-mnist", "mgr", args.mgr_epochs, Path(tmp) / "fashion")
        scaled = mgr_f * 30 / args.mgr_epochs  # an upper bound when scaled: the setup is scaled too
        what = "MGR run, 10 per class, pretrained, 30 epochs (`genreg train`, wall)"
        if args.mgr_epochs != 30:
            what += f": {args.mgr_epochs} epochs timed ({mgr_f:.0f} s), × 30/{args.mgr_epochs} (an upper bound)"
        rows.append((what, "", f"{scaled:.0f} s", "", "< 300 s", "met" if scaled < 300 else "missed"))
        print(rows[-1], mgr_payload, flush=True)
    flags = "" if args.mgr_epochs == 30 else f" --mgr-epochs {args.mgr_epochs}"
    lines = [f"Measured with `python -m bench.bench_fashion{flags}` on {os.cpu_count()} CPU cores, CPU device. "
             f"Load at the start: `{load}`.", "",
             "| what | digits | Fashion-MNIST | Fashion ÷ digits | target | |", "|---|---|---|---|---|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.write_text(table + "\n")


if __name__ == "__main__":
    main()
