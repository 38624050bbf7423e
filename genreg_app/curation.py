"""The Feature space page's selection metrics and curation panel (filters, zip export, train-on-curated)."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
import pandas as pd
import streamlit as st

from genreg_app import runs as app_runs
from genreg_app.feature_space import result_key
from genreg_app.runs import store_errors
from genreg_core.analysis.curation import (
    KEEPS,
    Candidates,
    CurationFilter,
    candidates_of,
    curation_mask,
    describe,
    export_pair,
    export_zip,
    meta_selected_influence,
    region_metrics,
)
from genreg_core.analysis.feature_space import FeatureSpaceConfig, FeatureSpaceResult
from genreg_core.config import TrainConfig
from genreg_core.lab import Lab
from genreg_core.paths import genreg_home
from genreg_core.runs import worker
from genreg_core.runs.store import RunSpec

METRICS = ("precision", "recall", "density", "coverage", "frechet_distance")
KEEP_NAMES = {"all": "all", "inside": "inside the real manifold", "outside": "outside the real manifold"}


def region_panel(lab: Lab, result: FeatureSpaceResult, real_sel: list[int], synth_sel: list[int], k: int) -> None:
    """The selection's metrics next to the whole set's (as deltas), its class mix, or a notice below k."""
    region = region_metrics(result, real_sel, synth_sel, k, lab.n_classes)
    st.markdown(f"**Metrics of the selection** ({region.n_real} real vs {region.n_synthetic} synthetic, k = {k}; "
                "the small figures are the difference from the whole set)")
    if region.metrics is None:
        st.warning(region.notice, icon=":material/info:")
    else:
        overall = result.metrics.overall
        for col, key in zip(st.columns(5), METRICS):
            col.metric(key.replace("_", " ").capitalize(), f"{region.metrics[key]:.3f}",
                       delta=f"{region.metrics[key] - overall[key]:+.3f}", delta_color="off")
    names = lab.dataset.class_names
    st.dataframe(pd.DataFrame([{"class": names[row["class"]], "real": row["real"], "synthetic": row["synthetic"]}
                               for row in region.class_mix]), hide_index=True, key="fs.mix")


def _candidates(lab: Lab, config: FeatureSpaceConfig, result: FeatureSpaceResult) -> Candidates:
    """The result's synthetic samples with their nearest real training image (and an MGR run's influence)."""
    key = ("candidates", *result_key(lab, config))
    cache = st.session_state.setdefault("fs.candidates", {})
    if key not in cache:
        influence = None
        if config.source == "mgr" and config.run_id:
            with store_errors(stop=False):
                influence = meta_selected_influence(app_runs.run_store().load_snapshots(config.run_id))
        cache.clear()  # one result at a time per session
        cache[key] = candidates_of(lab, result, influence)
    return cache[key]


def _filters(lab: Lab, candidates: Candidates, synth_sel: list[int]) -> CurationFilter:
    c1, c2, c3 = st.columns(3)
    keep = c1.radio("Manifold flag", KEEPS[::-1], format_func=KEEP_NAMES.get, key="fs.cur_keep", horizontal=True)
    classes = c2.multiselect("Classes to keep", list(range(lab.n_classes)), key="fs.cur_classes",
                             format_func=lambda c: lab.dataset.class_names[c], placeholder="all classes")
    only_selected = c3.toggle(f"Only the current selection ({len(synth_sel)} synthetic)", key="fs.cur_selection",
                              disabled=not synth_sel)
    d1, d2, d3 = st.columns(3)
    top = float(np.ceil(candidates.nn_distance.max() * 100) / 100) if len(candidates.nn_distance) else 1.0
    low, high = d1.slider("Distance to the nearest real training image (feature space)", 0.0, max(top, 0.01),
                          (0.0, max(top, 0.01)), key="fs.cur_nn",
                          help="Raise the lower end to drop near-copies of training images (the copy check); "
                               "lower the upper end to drop outliers.")
    max_influence = None
    if candidates.influence is not None:
        if d2.toggle("Only samples that lower the validation loss (influence ≤ 0)", key="fs.cur_influence"):
            max_influence = 0.0
    return CurationFilter(keep=keep, classes=tuple(classes) or None, min_nn_distance=low if low > 0 else None,
                          max_nn_distance=high if high < top else None, max_influence=max_influence,
                          selection=tuple(synth_sel) if only_selected and synth_sel else None)


def _launch_pair(lab: Lab, candidates: Candidates, keep: np.ndarray, record: dict) -> None:
    """CE on real data plus the curated pool vs the same run with an uncurated pool of the same size (GDA)."""
    digest = hashlib.sha256(json.dumps([record, np.flatnonzero(keep).tolist()], sort_keys=True,
                                       default=str).encode()).hexdigest()[:12]
    curated, uncurated = export_pair(genreg_home() / "curated" / digest, candidates, keep, record,
                                     lab.dataset.class_names, seed=record["seed"])
    base = TrainConfig(method="gda")
    with store_errors(stop=False):
        for folder in (curated, uncurated):
            train = dataclasses.replace(base, gda=dataclasses.replace(base.gda, pool_folder=str(folder)))
            spec = RunSpec(train, lab.data_config, lab.generator_source, lab.device.type)
            worker.launch_run(app_runs.run_store(), spec)
        st.toast("Launched a curated and an uncurated GDA run: compare them on the Training runs page.")
    st.session_state["fs.cur_launched"] = (str(curated), str(uncurated))


def curation_panel(lab: Lab, config: FeatureSpaceConfig, result: FeatureSpaceResult, synth_sel: list[int]) -> None:
    """Filter the synthetic samples, export the kept ones as a zip, or train on them against an uncurated pool."""
    candidates = _candidates(lab, config, result)
    try:
        rules = _filters(lab, candidates, synth_sel)
        keep = curation_mask(candidates.in_manifold, candidates.labels, candidates.nn_distance, rules,
                             candidates.influence)
    except ValueError as exc:
        st.error(str(exc))
        return
    kept = int(keep.sum())
    counts = np.bincount(candidates.labels[keep], minlength=lab.n_classes)
    st.caption(f"Keeping **{kept}** of {len(keep)} synthetic samples: "
               + ", ".join(f"{lab.dataset.class_names[c]}: {n}" for c, n in enumerate(counts) if n))
    record = describe(lab, config, rules)
    e1, e2 = st.columns(2)
    e1.download_button("Export the kept samples (zip: curated/<class>/*.png + manifest.json)",
                       (lambda: export_zip(candidates, keep, record, lab.dataset.class_names)) if kept else b"",
                       "curated.zip", "application/zip", key="fs.cur_zip", disabled=not kept, on_click="ignore")
    if e2.button("Train on curated vs uncurated (2 GDA runs, 10 per class, 30 epochs)", key="fs.cur_train",
                 disabled=kept == 0 or kept == len(keep),
                 help="CE on the real images plus the kept samples as GDA's pool, against the same run with as many "
                      "samples drawn at random from all candidates. Both are recorded on the Training runs page."):
        _launch_pair(lab, candidates, keep, record)
    if "fs.cur_launched" in st.session_state:
        st.caption("Last pair's pools: " + " and ".join(f"`{p}`" for p in st.session_state["fs.cur_launched"]))
