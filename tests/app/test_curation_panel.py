"""The Feature space page's curation panel: its count follows the filters, and train-on-curated launches a pair."""

import json
from pathlib import Path

import numpy as np
import streamlit as st
from streamlit.testing.v1 import AppTest

from genreg_core.analysis.feature_space import FeatureSpaceConfig, compute_feature_space
from genreg_core.config import SamplerConfig


def test_curation_panel_counts_and_launches_a_curated_and_an_uncurated_run(monkeypatch, tmp_path):
    st.cache_data.clear()
    specs = []
    monkeypatch.setattr("genreg_core.runs.worker.launch_run", lambda store, spec, *a: specs.append(spec) or "id")
    at = AppTest.from_file("../../app_pages/feature_space.py", default_timeout=180)
    at.session_state["fs.per_class"], at.session_state["fs.steps"] = 10, 3
    at.run()
    assert not at.exception, at.exception
    assert any("Keeping **100** of 100" in c.value for c in at.caption)
    at.radio(key="fs.cur_keep").set_value("inside")
    at.multiselect(key="fs.cur_classes").set_value([0, 1]).run()
    assert not at.exception, at.exception
    # the same view computed here: the panel keeps exactly the samples of classes 0 and 1 flagged inside
    from genreg_core.lab import open_lab

    lab = open_lab()
    first = FeatureSpaceConfig(per_class=10, t=lab.generator.num_train_timesteps // 2, sampler=SamplerConfig(n_steps=3))
    result = compute_feature_space(lab, first)
    inside = int((result.metrics.prdc.synthetic_in_manifold & np.isin(result.synthetic_labels, [0, 1])).sum())
    assert any(f"Keeping **{inside}** of 100" in c.value for c in at.caption)
    next(b for b in at.button if b.label.startswith("Train on curated")).click().run()
    assert not at.exception, at.exception
    assert [s.train.method for s in specs] == ["gda", "gda"]
    pools = [Path(s.train.gda.pool_folder) for s in specs]
    assert [p.name for p in pools] == ["curated", "uncurated"]
    manifests = [json.loads((p / "manifest.json").read_text()) for p in pools]
    assert manifests[0]["n_kept"] == manifests[1]["n_kept"] == inside
    assert all(e["in_real_manifold"] for e in manifests[0]["images"])
    assert np.sum([len(list(p.glob("*/*.png"))) for p in pools]) == 2 * inside
