"""Reverse start step: noise real images to step t, run the reverse process back, and sweep t."""

import hashlib
from dataclasses import asdict

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
import torch

from genreg_app.progress import cached_with_progress
from genreg_app.render import full_table, grid_with_download, image_strip, json_download
from genreg_app.state import current_lab, lab_key
from genreg_app.url_state import UrlState, float_in, int_in, one_of
from genreg_core.analysis.embedding import EMBEDDING_HELP, EMBEDDING_NAMES
from genreg_core.analysis.reverse_step import SweepConfig, drift_projection, run_sweep
from genreg_core.config import SamplerConfig
from genreg_core.data.datasets import load_uploaded_images
from genreg_core.diffusion.perturbation import KINDS, NORMS, perturbation_view
from genreg_core.diffusion.sampling import reconstruct_many, reconstruct_view
from genreg_core.features.extractor import predict_labels
from genreg_core.imaging import make_grid
from genreg_core.lab import real_subset
from genreg_core.plots import drift_scatter, sweep_curves, uncovered_curves

SWEEP_KEYS = ("mse", "feature_distance", "precision", "recall", "density", "coverage", "frechet_distance",
              "centroid_distance", "label_agreement")

st.title("Reverse start step t")
st.markdown(
    "Each real image is noised to exactly step *t* of the forward process and the reverse process runs back to "
    "0 (SDEdit-style reconstruction). Small *t* keeps the image; large *t* lets the model replace it with what it "
    "finds typical. *On the Limitation of Diffusion Models for Synthesizing Training Datasets* (Yamaguchi & "
    "Fukuda, 2023) shows that as *t* grows, reconstructions collapse into the **modes** of the real distribution "
    "and stop covering its edges — and classifiers trained on them get worse."
)
lab = current_lab()
T = lab.generator.num_train_timesteps
names = lab.dataset.class_names
url = UrlState("rs", ["pick", "n", "pick_seed", "t", "sampler", "steps", "guidance", "seed"])

st.subheader("Images")
url.bind("pick", "rs.pick", one_of(["random per class", "by index", "upload"]))
pick = st.radio("Pick images", ["random per class", "by index", "upload"], horizontal=True, key="rs.pick")
if pick == "random per class":
    c1, c2 = st.columns(2)
    url.bind("n", "rs.per_class", int_in(1, 4))
    url.bind("pick_seed", "rs.pick_seed", int_in(0, 10_000))
    n_per = c1.slider("Images per class", 1, 4, 1, key="rs.per_class")
    pick_seed = c2.number_input("Pick seed", 0, 10_000, 0, key="rs.pick_seed")
    ids = real_subset(lab, n_per, int(pick_seed))
    originals, labels = lab.dataset.images[ids], lab.dataset.labels[ids]
    image_key = f"ids:{ids.tolist()}"
elif pick == "by index":
    text = st.text_input(f"Dataset indices (0–{len(lab.dataset) - 1}, comma separated)", "0, 1, 2, 3", key="rs.ids")
    try:
        ids = np.array([int(x) for x in text.replace(" ", "").split(",") if x], dtype=np.int64)
        if len(ids) == 0 or ids.min() < 0 or ids.max() >= len(lab.dataset):
            raise ValueError
    except ValueError:
        st.error(f"Give comma-separated integers between 0 and {len(lab.dataset) - 1}.")
        st.stop()
    originals, labels = lab.dataset.images[ids], lab.dataset.labels[ids]
    image_key = f"ids:{ids.tolist()}"
else:
    files = st.file_uploader("Images (PNG/JPEG)", type=["png", "jpg", "jpeg"], accept_multiple_files=True,
                             key="rs.upload")
    if not files:
        st.info("Upload one or more images; they are resized to the dataset's size.")
        st.stop()
    payload = [(f.name, f.getvalue()) for f in files[:16]]
    try:
        originals = load_uploaded_images(payload, lab.dataset.image_size, lab.dataset.channels)
    except ValueError as exc:
        st.error(str(exc))
        st.stop()
    labels = torch.from_numpy(predict_labels(lab.extractor, originals))
    st.caption("Uploaded images are conditioned on the class the feature classifier predicts: "
               + ", ".join(names[c] for c in labels.tolist()))
    image_key = "upload:" + hashlib.sha256(b"".join(data for _, data in payload)).hexdigest()[:16]

st.subheader("Sampler")
s1, s2, s3, s4, s5 = st.columns(5)
url.bind("t", "rs.t", int_in(0, T))
url.bind("sampler", "rs.method", one_of(["ddim", "ddpm"]))
url.bind("steps", "rs.steps", int_in(1, 1000))
url.bind("guidance", "rs.guidance", float_in(0.0, 10.0))
url.bind("seed", "rs.seed", int_in(0, 10_000))
t = s1.slider("Start step t", 0, T, T // 2, key="rs.t")
method = s2.radio("Sampler", ["ddim", "ddpm"], horizontal=True, key="rs.method", format_func=str.upper)
steps = s3.number_input("DDIM steps", 1, 1000, SweepConfig().sampler.n_steps, key="rs.steps",
                        disabled=method == "ddpm", help="25 by default, as in `genreg sweep`")
guidance = s4.number_input("Guidance w", 0.0, 10.0, 0.0, step=0.5, key="rs.guidance",
                           disabled=lab.generator.null_class is None)
seed = int(s5.number_input("Noise seed", 0, 10_000, 0, key="rs.seed"))
sampler = SamplerConfig(method=method, n_steps=int(steps), guidance_scale=float(guidance))
if method == "ddpm":
    st.warning(f"DDPM runs one network evaluation per step: up to {T:,} from t = T, about {T // int(steps)}× the "
               f"cost of DDIM with {int(steps)} steps. The grid below waits for you to ask for it, and a sweep "
               "will take minutes.",
               icon=":material/hourglass_top:")
cache_key = (lab_key(lab), image_key, str(asdict(sampler)), seed)
url.finish()


@st.cache_data(show_spinner=False, max_entries=64)
def _view(key: tuple, t: int):
    return reconstruct_view(lab.generator, originals, labels.to(lab.device), t, sampler, seed)


@st.cache_data(show_spinner=False, max_entries=16)
def _grid(key: tuple, t_values: tuple[int, ...]):
    return reconstruct_many(lab.generator, originals, labels.to(lab.device), list(t_values), sampler, seed)


with st.spinner(f"Reconstructing from t = {t}…"):
    view = _view(cache_key, t)
n = len(originals)
st.image(make_grid(torch.cat([originals, view.x_t, view.reconstructions]), n, scale=4),
         caption=f"rows: original · x_t at t = {t} · reconstruction ({len(view.steps) - 1} sampler steps). "
                 f"Classes: {', '.join(names[c] for c in labels.tolist())}")

st.subheader("Over a sweep of t")
t_grid = tuple(int(round(x)) for x in np.linspace(0, T, 11))
if method == "ddim" or st.toggle("Reconstruct the grid with DDPM (slow)", key="rs.ddpm_grid"):
    with st.spinner("Reconstructing from 11 start steps…"):
        grid = _grid(cache_key, t_grid)  # (len(t), N, C, H, W)
    grid_with_download(grid.transpose(0, 1).reshape(-1, *grid.shape[2:]), len(t_grid),
                       f"one row per image; columns t = {', '.join(map(str, t_grid))}", "reconstruction_grid.png",
                       key="rs.grid_png")

st.subheader("Predicted x̂₀ along the reverse process")
if view.x0_trajectory is None:
    st.caption("At t = 0 there is no reverse process.")
else:
    which = st.selectbox("Image", range(n), format_func=lambda i: f"#{i} (class {names[labels[i]]})", key="rs.which")
    frames = np.unique(np.linspace(0, len(view.x0_trajectory) - 1, min(16, len(view.x0_trajectory))).astype(int))
    st.image(make_grid(view.x0_trajectory[frames, which], len(frames), scale=4),
             caption="x̂₀ predicted at steps " + ", ".join(str(view.steps[i]) for i in frames))

st.subheader("Semantic perturbations through DDIM inversion")
st.markdown(
    "*Semantic Perturbations with Normalizing Flows for Improved Generalization* (Yüksel et al., ICCV 2021) perturbs "
    "the exact latent of an invertible model. Here the invertible map is deterministic DDIM: each image is inverted "
    "to depth τ (the DDIM ODE run forward), its latent is moved by Δz with ‖Δz‖ ≤ ε, and the same steps decode it "
    "back. `adv` attacks the feature classifier's own prediction ŷ."
)
p1, p2, p3, p4, p5 = st.columns(5)
sem_kind = p1.selectbox("Perturbation", list(KINDS), key="rs.sem_kind")
sem_norm = p2.selectbox("Ball", list(NORMS), index=1, key="rs.sem_norm")
sem_tau = p3.slider("Depth τ", 50, T, min(500, T), step=50, key="rs.sem_tau")
sem_steps = int(p4.number_input("DDIM steps", 2, 50, 10, key="rs.sem_steps"))
sem_max = p5.number_input("Largest ε", 0.01, 50.0, 0.8, format="%.2f", key="rs.sem_max",
                          help="ℓ2 radii are over all C·H·W latent entries: try about 16× the ℓ∞ value on 16×16 images")
eps_values = [round(float(sem_max) * f, 4) for f in (0.25, 0.5, 0.75, 1.0)]
sem_images, sem_labels = originals[:8], labels[:8]


@st.cache_data(show_spinner="Inverting, perturbing and decoding…", max_entries=16)
def _perturbations(key: tuple, kind: str, norm: str, eps: tuple[float, ...], tau: int, n_steps: int):
    return perturbation_view(lab.generator, lab.extractor.model, sem_images, sem_labels.to(lab.device), kind, norm,
                             list(eps), tau, n_steps, seed=seed)


pview = _perturbations(cache_key, sem_kind, sem_norm, tuple(eps_values), int(sem_tau), sem_steps)
columns = torch.stack([sem_images, pview.round_trip, *pview.decodings], 1)  # (N, 2 + E, C, H, W)
st.image(make_grid(columns.reshape(-1, *columns.shape[2:]), columns.shape[1], scale=4),
         caption="one row per image; columns: original · round trip (ε = 0) · ε = "
                 + ", ".join(f"{e:g}" for e in pview.eps_values))
rows = np.arange(len(pview.target))
p_hat = pview.probabilities[:, rows, pview.target]  # (E + 1, N) p(ŷ) of each image
fig = go.Figure([go.Scatter(x=[0.0, *pview.eps_values], y=p_hat[:, j], mode="lines+markers",
                            name=f"#{j} (ŷ = {names[pview.target[j]]})") for j in rows])
fig.update_layout(height=300, xaxis_title="ε", yaxis_title="classifier p(ŷ)", margin=dict(l=10, r=10, t=30, b=10))
st.plotly_chart(fig, key="rs.sem_probs")
st.caption(f"RMS of Δz per ε: {', '.join(f'{v:.3f}' for v in pview.latent_rms)}. The round trip itself is not "
           "exact: see the README's round-trip table.")

st.subheader("Sweep analysis")
with st.form("rs.sweep_form"):
    sweep_n = st.slider("Training images per class", 5, 100, 20, step=5, key="rs.sweep_n")
    sweep_t = st.pills("t values", list(range(0, T + 1, T // 20)), selection_mode="multi", default=list(t_grid),
                       key="rs.sweep_t")
    train_acc = st.checkbox("Also train a small classifier on each reconstructed set and report its test accuracy "
                            "(slower)", key="rs.train_acc")
    embedding = st.selectbox("Embedding", list(EMBEDDING_NAMES), format_func=EMBEDDING_NAMES.get,
                             key="rs.embedding", help=EMBEDDING_HELP)
    st.caption(f"Uses the sampler above ({sampler.method.upper()}"
               + (f", {sampler.n_steps} steps" if sampler.method == "ddim" else "") + ") and its noise seed.")
    run = st.form_submit_button("Run sweep", type="primary")
if run:
    if not sweep_t:
        st.error("Pick at least one t value.")
        st.stop()
    st.session_state["rs.sweep_config"] = SweepConfig(
        t_values=tuple(sorted(sweep_t)), per_class=sweep_n, seed=seed, sampler=sampler, train_accuracy=train_acc,
        embedding=embedding)
sweep_config = st.session_state.get("rs.sweep_config")
if sweep_config is None:
    st.caption("Run a sweep to see each metric as a curve over t.")
    st.stop()
try:
    sweep = cached_with_progress("sweep", (lab_key(lab), str(asdict(sweep_config))),
                                 lambda progress: run_sweep(lab, sweep_config, progress), "Sweeping…")
except ValueError as exc:
    st.error(str(exc))
    st.stop()
keys = list(SWEEP_KEYS) + (["train_accuracy_on_reconstructions"] if sweep_config.train_accuracy else [])
st.plotly_chart(sweep_curves(sweep.rows, keys), key="rs.curves")
table = pd.DataFrame(sweep.rows)
full_table(table)
e1, e2 = st.columns(2)
e1.download_button("Download sweep (CSV)", table.to_csv(index=False), "sweep.csv", "text/csv", key="rs.csv")
with e2:
    json_download("Download sweep (JSON)", sweep.rows, "sweep.json", key="rs.json")

st.subheader("Coverage holes over t")
st.plotly_chart(uncovered_curves(sweep.rows, lab.dataset.class_names), key="rs.uncovered")
hole_t = st.select_slider("Show the uncovered real images at t", sweep.t_values, value=sweep.t_values[-1],
                          key="rs.hole_t")
hole_row = sweep.t_values.index(hole_t)
ref_images = (sweep.originals if sweep_config.reference == "same"
              else lab.dataset.images[sweep.reference_indices])
ref_labels = (sweep.labels if sweep_config.reference == "same"
              else lab.dataset.labels[sweep.reference_indices].numpy())
hole_ids = np.flatnonzero(sweep.uncovered[hole_row])[:24]
st.caption(f"At t = {hole_t}, {int(sweep.uncovered[hole_row].sum())} of {sweep.uncovered.shape[1]} real images lie "
           "outside every reconstruction's k-NN ball: the edges of the distribution that the reconstructions miss.")
if len(hole_ids):
    image_strip(ref_images[hole_ids], [lab.dataset.class_names[ref_labels[i]] for i in hole_ids])

st.subheader("Drift in feature space")
orig_xy, rec_xy = drift_projection(sweep)
show_t = st.multiselect("Reconstructions to draw", sweep.t_values, default=sweep.t_values[1::3] or sweep.t_values,
                        key="rs.drift_t")
chosen = [sweep.t_values.index(x) for x in show_t]
st.plotly_chart(drift_scatter(orig_xy, rec_xy[chosen], show_t, sweep.labels, names), key="rs.drift")
st.caption(f"PCA of {EMBEDDING_NAMES[sweep_config.embedding]} features fitted on the originals; grey lines join "
           "each original to its reconstructions. Points drifting toward the class clusters' centres are the modes "
           "taking over.")
