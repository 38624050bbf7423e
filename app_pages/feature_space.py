"""Feature space: where synthetic samples fall relative to real ones, per class."""

import functools
from dataclasses import asdict

import numpy as np
import pandas as pd
import streamlit as st

from genreg_app.curation import curation_panel, region_panel
from genreg_app.feature_space import feature_space_result, first_view_config, result_key
from genreg_app.progress import in_background, rerun_when_done, warm_up_umap_once
from genreg_app.render import full_table, image_strip, json_download, selected_point_ids
from genreg_app.runs import run_label, run_store, store_errors
from genreg_app.state import current_lab
from genreg_app.url_state import UrlState, int_in, list_of, one_of
from genreg_core.analysis.embedding import EMBEDDING_HELP, EMBEDDING_NAMES
from genreg_core.analysis.feature_space import (
    FeatureSpaceConfig,
    FeatureSpaceResult,
    embedding_rows,
    nearest_training_images,
)
from genreg_core.config import SamplerConfig
from genreg_core.evaluation.projection import project
from genreg_core.plots import feature_scatter, metric_bars

st.title("Feature space: real vs synthetic")
st.markdown(
    "Real training images and synthetic ones are embedded by the feature extractor and compared with the "
    "k-nearest-neighbour metrics of Naeem et al. (2020), *Reliable Fidelity and Diversity Metrics for Generative "
    "Models*. **Precision** is the share of synthetic points inside the real manifold (a union of k-NN balls "
    "around real points) — fidelity; **recall** the share of real points inside the synthetic manifold — "
    "diversity. **Density** counts how many real balls hold each synthetic point (above 1 means crowding into the "
    "real modes), and **coverage** is the share of real points whose ball holds at least one synthetic point."
)
lab = current_lab()
T = lab.generator.num_train_timesteps
first = first_view_config(lab)  # Home computes this one ahead of time
url = UrlState("fs", ["source", "n", "k", "seed", "steps", "t", "run", "embedding", "method", "mode", "dim", "color",
                      "classes"])

AXIS_NAMES = {"pca": "PC", "umap": "UMAP", "tsne": "t-SNE"}
METHOD_NAMES = {"pca": "PCA", "umap": "UMAP", "tsne": "t-SNE"}
SOURCE_NAMES = {"generate": "generation from noise", "reconstruct": "reconstruction from t",
                "folder": "an image folder", "mgr": "MGR's meta-selected latents (a run)"}


def _per_class(text: str) -> int:
    value = int_in(10, 200)(text)
    if value % 10:
        raise ValueError("must be a multiple of 10")
    return value


url.bind("source", "fs.source", one_of(list(SOURCE_NAMES)))
source = st.segmented_control("Synthetic source", list(SOURCE_NAMES), format_func=SOURCE_NAMES.get,
                              default="generate", key="fs.source") or "generate"
with st.form("fs.form"):
    c1, c2, c3, c4 = st.columns(4)
    url.bind("n", "fs.per_class", _per_class)
    url.bind("k", "fs.k", int_in(1, 50))
    url.bind("seed", "fs.seed", int_in(0, 10_000))
    url.bind("steps", "fs.steps", int_in(1, 200))
    per_class = c1.slider("Images per class (real and synthetic)", 10, 200, first.per_class, step=10,
                          key="fs.per_class")
    k = c2.number_input("k (nearest neighbours)", 1, 50, first.k, key="fs.k")
    seed = c3.number_input("Seed", 0, 10_000, first.seed, key="fs.seed")
    sampler_steps = c4.number_input("DDIM steps", 1, 200, first.sampler.n_steps, key="fs.steps",
                                    disabled=source not in ("generate", "reconstruct"))
    t, folder, run_id = first.t, "", None
    if source == "reconstruct":
        url.bind("t", "fs.t", int_in(0, T))
        t = st.slider("Start step t", 0, T, first.t, key="fs.t")
    elif source == "folder":
        folder = st.text_input("Image folder (ROOT/<class>/*.png, class folders named like the dataset's)",
                               key="fs.folder")
    elif source == "mgr":
        mgr_runs = {}
        with store_errors(stop=False):
            mgr_runs = {run_label(r): r.run_id for r in run_store().list_runs()
                        if r.method.startswith("mgr") and r.status in ("finished", "stopped")}
        label_of = {run_id: label for label, run_id in mgr_runs.items()}
        url.bind("run", "fs.run", lambda text: label_of[one_of(list(label_of))(text)],
                 encode=lambda label: mgr_runs.get(label, ""))
        run_id = mgr_runs.get(st.selectbox("MGR run (its meta-selected samples of every epoch)", list(mgr_runs),
                                           key="fs.run",
                                           placeholder="no finished MGR run yet: launch one on the Training runs page"))
    url.bind("embedding", "fs.embedding", one_of(list(EMBEDDING_NAMES)))
    embedding = st.selectbox("Embedding", list(EMBEDDING_NAMES), format_func=EMBEDDING_NAMES.get,
                             index=list(EMBEDDING_NAMES).index(first.embedding), key="fs.embedding",
                             help=EMBEDDING_HELP)
    submitted = st.form_submit_button("Compute", type="primary")

form_config = FeatureSpaceConfig(source=source, per_class=per_class, t=t, folder=folder or None, run_id=run_id,
                                 k=int(k), seed=int(seed), sampler=SamplerConfig(n_steps=int(sampler_steps)),
                                 embedding=embedding)
# nothing heavy runs until the form is submitted; the first visit shows the default settings
if submitted or "fs.config" not in st.session_state:
    st.session_state["fs.config"] = form_config
config: FeatureSpaceConfig = st.session_state["fs.config"]
if config != form_config:
    st.caption(f"Showing the last computed settings ({SOURCE_NAMES[config.source]}); press **Compute** to apply "
               "the ones above.")
try:
    result: FeatureSpaceResult = feature_space_result(lab, config)
except ValueError as exc:
    st.error(str(exc))
    st.stop()


overall = result.metrics.overall
cols = st.columns(5)
for col, key in zip(cols, ("precision", "recall", "density", "coverage", "frechet_distance")):
    col.metric(key.replace("_", " ").capitalize(), f"{overall[key]:.3f}")
st.caption(f"{overall['n_real']} real vs {overall['n_synthetic']} synthetic feature vectors, k = {overall['k']}, "
           f"feature size {result.real_features.shape[1]}.")

st.subheader("Projection")
p1, p2, p3, p4, p5 = st.columns(5)
url.bind("method", "fs.method", one_of(list(METHOD_NAMES)))
url.bind("mode", "fs.mode", one_of(["fit_real", "union"]))
url.bind("dim", "fs.dims", one_of([2, 3]))
url.bind("color", "fs.color", one_of(["source", "class", "flag"]))
url.bind("classes", "fs.classes", list_of(list(range(lab.n_classes))))
method = p1.selectbox("Method", list(METHOD_NAMES), key="fs.method", format_func=METHOD_NAMES.get)
modes = ["union"] if method == "tsne" else ["fit_real", "union"]
mode = p2.selectbox("Fit on", modes, key="fs.mode",
                    format_func={"fit_real": "real, map synthetic in", "union": "real ∪ synthetic"}.get)
dims = p3.radio("Dimensions", [2, 3], horizontal=True, key="fs.dims")
color_by = p4.selectbox("Color by", ["source", "class", "flag"], key="fs.color",
                        format_func={"source": "source", "class": "class", "flag": "manifold flag"}.get)
classes = p5.multiselect("Classes", list(range(lab.n_classes)), format_func=lambda c: lab.dataset.class_names[c],
                         key="fs.classes", placeholder="all classes")

# UMAP and t-SNE take seconds (the first UMAP of a server also waits for numba to compile): they run in the
# background while the page shows the PCA of the same points and stays usable (projections are cached in the core)
shown = method
pca = functools.partial(project, result.real_features, result.synthetic_features, "pca", mode, dims, random_state=0)
try:
    if method == "pca":
        proj = pca()
    else:
        # 200 UMAP epochs instead of umap-learn's 500 for small data: interactive speed, the same neighbourhoods
        job = in_background("projection", (*result_key(lab, config), method, mode, dims),
                            functools.partial(project, result.real_features, result.synthetic_features, method,
                                              mode, dims, random_state=0, n_epochs=200 if method == "umap" else None))
        if job.done():
            proj = job.result()
        else:
            st.info(f"Computing the {METHOD_NAMES[method]} projection in the background (the first UMAP after the "
                    "server starts also compiles numba, up to ~20 s on 2 cores). Showing PCA until it is ready; the "
                    "page stays usable.", icon=":material/hourglass_top:")
            shown, proj = "pca", pca()
            rerun_when_done(job)
except ValueError as exc:
    st.error(str(exc))
    st.stop()

n_real = len(result.real_labels)
prdc = result.metrics.prdc
fig = feature_scatter(proj.real, proj.synthetic, result.real_labels, result.synthetic_labels, lab.dataset.class_names,
                      color_by, synth_in_manifold=prdc.synthetic_in_manifold, real_covered=prdc.real_covered,
                      title=f"{METHOD_NAMES[shown]} of {EMBEDDING_NAMES[config.embedding]} features",
                      axis_name=AXIS_NAMES[shown], highlight_classes=classes)
event = st.plotly_chart(fig, on_select="rerun", selection_mode=("points", "box", "lasso"), key="fs.chart")

n_points = n_real + len(result.synthetic_labels)
selected = [i for i in selected_point_ids(event) if i < n_points]  # a stale selection may outlive its result
st.subheader("Selection")
if not selected:
    st.caption("Select points in the chart (click, box or lasso) to see their images and nearest real neighbours.")
else:
    real_sel = [i for i in selected if i < n_real]
    synth_sel = [i - n_real for i in selected if i >= n_real]
    names = lab.dataset.class_names
    if real_sel:
        st.markdown(f"**Real** ({len(real_sel)} selected)")
        image_strip(result.real_images[real_sel], [f"id {i} · {names[result.real_labels[i]]}" for i in real_sel])
    if synth_sel:
        st.markdown(f"**Synthetic** ({len(synth_sel)} selected) and their nearest real training images")
        shown = synth_sel[:6]
        nn_idx, nn_dist = nearest_training_images(lab, result.synthetic_features[shown], n=5,
                                                  embedding=result.embedding)
        for row, j in enumerate(shown):
            flag = "in" if prdc.synthetic_in_manifold[j] else "off"
            images = np.concatenate([result.synthetic_images[j:j + 1].numpy(),
                                     lab.dataset.images[nn_idx[row]].numpy()])
            captions = [f"synthetic {n_real + j} · {names[result.synthetic_labels[j]]} · {flag} manifold"] + [
                f"real #{i} · {names[lab.dataset.labels[i]]} · d={d:.2f}" for i, d in zip(nn_idx[row], nn_dist[row])]
            image_strip(images, captions)
        if len(synth_sel) > len(shown):
            st.caption(f"Showing neighbours for the first {len(shown)} of {len(synth_sel)} synthetic points.")
    region_panel(lab, result, real_sel, synth_sel, config.k)

st.subheader("Curate and export the synthetic samples")
curation_panel(lab, config, result, synth_sel if selected else [])

st.subheader("Coverage holes")
holes = ~prdc.real_recalled  # real images outside every synthetic sample's k-NN ball
names = lab.dataset.class_names
st.caption(f"{int(holes.sum())} of {n_real} real images lie outside every synthetic sample's k-NN ball (k = "
           f"{config.k}): no synthetic sample comes near them. Share per class: "
           + ", ".join(f"{names[row['class']]} {row['share']:.0%}" for row in result.metrics.uncovered))
hole_ids = np.flatnonzero(holes)[:24]
if len(hole_ids):
    image_strip(result.real_images[hole_ids], [f"id {i} · {names[result.real_labels[i]]}" for i in hole_ids])

st.subheader("Metrics per class")
per_class = result.metrics.per_class
table = pd.DataFrame([{**row, "class": lab.dataset.class_names[row["class"]]} for row in per_class])
full_table(pd.concat([pd.DataFrame([{"class": "all", **overall}]), table], ignore_index=True))
st.plotly_chart(metric_bars(per_class, lab.dataset.class_names), key="fs.bars")

d1, d2 = st.columns(2)
rows = embedding_rows(result, proj.real, proj.synthetic, lab.dataset.class_names)
d1.download_button("Download embedding (CSV)", pd.DataFrame(rows).to_csv(index=False), "embedding.csv", "text/csv",
                   key="fs.csv")
with d2:
    json_download("Download metrics (JSON)", {"config": asdict(config), **result.metrics.to_json_dict()},
                  "feature_space_metrics.json", key="fs.json")
url.finish()
warm_up_umap_once()  # the first UMAP a user asks for then finds numba compiled
