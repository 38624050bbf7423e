"""Train-on-curated check: GDA with a curated synthetic pool against GDA with an uncurated pool of the same size.

Generates ``--candidates`` samples per class with the lab's generator, keeps those inside the real manifold whose
nearest real training image is at most the candidates' median distance (``genreg_core.analysis.curation``),
exports that pool and a same-size uniform draw from all candidates, and trains the same GDA run on each pool
(``TrainConfig.gda.pool_folder``) for every seed; prints and writes the test accuracies at the best validation
epoch:

    python -m experiments.curated_vs_uncurated --seeds 0 1 2 --out experiments/results/curated_vs_uncurated.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from genreg_core.analysis.curation import CurateConfig, CurationFilter, curate, curation_mask, export_pair
from genreg_core.config import GDAOptions, SamplerConfig, TrainConfig
from genreg_core.lab import open_lab
from genreg_core.training.loop import train_classifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=50, help="generated candidates per class")
    parser.add_argument("--per-class", type=int, default=10, help="real training images per class of each run")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="experiments/results/curated_vs_uncurated.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lab = open_lab(device="cpu")
    config = CurateConfig(per_class=args.candidates, sampler=SamplerConfig(n_steps=25), rules=CurationFilter())
    candidates, _, record = curate(lab, config)
    threshold = float(np.median(candidates.nn_distance))
    rules = CurationFilter(keep="inside", max_nn_distance=threshold)
    keep = curation_mask(candidates.in_manifold, candidates.labels, candidates.nn_distance, rules)
    record = {**record, "filters": {"keep": "inside", "max_nn_distance": threshold}}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        curated, uncurated = export_pair(Path(tmp), candidates, keep, record, lab.dataset.class_names, seed=0)
        for seed in args.seeds:
            for name, folder in (("curated", curated), ("uncurated", uncurated)):
                train = TrainConfig(method="gda", per_class=args.per_class, epochs=args.epochs, seed=seed,
                                    gda=GDAOptions(pool_folder=str(folder)))
                start = time.perf_counter()
                result = train_classifier(lab.dataset, lab.split, train, lab.generator, "cpu")
                rows.append({"pool": name, "seed": seed, "test_accuracy": result.test_accuracy,
                             "best_epoch": result.best_epoch, "seconds": round(time.perf_counter() - start, 1)})
                print(json.dumps(rows[-1]), flush=True)
    summary = {}
    for name in ("curated", "uncurated"):
        acc = np.array([r["test_accuracy"] for r in rows if r["pool"] == name])
        summary[name] = {"mean": float(acc.mean()), "std": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
                         "runs": len(acc)}
    payload = {"candidates": int(len(keep)), "kept": int(keep.sum()), "max_nn_distance": threshold,
               "inside_share": float(candidates.in_manifold.mean()), "per_class": args.per_class,
               "epochs": args.epochs, "summary": summary, "runs": rows}
    Path(args.out).write_text(json.dumps(payload, indent=2))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
