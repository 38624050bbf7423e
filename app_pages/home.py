"""Home: what genreg is for, and real next to generated images for every class."""

import pandas as pd
import streamlit as st

from genreg_app.feature_space import prefetch_first_view
from genreg_app.state import current_lab, lab_key
from genreg_core.analysis.claims import load_claims
from genreg_core.config import SamplerConfig
from genreg_core.imaging import make_grid

PER_CLASS = 6

st.title("genreg — generative augmentation and feature regularization lab")
st.markdown(
    "The papers this lab follows **claim** that synthetic images from diffusion models are not real data — that "
    "they concentrate in the modes of the real distribution and miss its edges — and that regularizers which use "
    "synthetic data (MGR, AdaRand) help small-data classifiers more than adding the images as training data. "
    "genreg lets you **look** for each of these — in feature space, as a function of the reverse start step, and "
    "through the latents a meta-learner picks — and **measure** it with your own runs. Whether our runs reproduce "
    "a claim is the table below's to say, not this paragraph's. Pick the dataset (the bundled digits, or the "
    "harder Fashion-MNIST) and the generator in the sidebar; every page uses them."
)

lab = current_lab()


@st.cache_data(show_spinner=False, max_entries=8, persist="disk")
def _grids(key: str, per_class: int) -> tuple:
    real_idx = [lab.split.train[lab.dataset.labels[lab.split.train] == c][:per_class] for c in range(lab.n_classes)]
    real = lab.dataset.images[[int(i) for idx in real_idx for i in idx]]
    fake, labels = lab.sample(per_class, SamplerConfig(), seed=0)
    fake = fake[labels.argsort(stable=True)]
    return make_grid(real, per_class, scale=3), make_grid(fake, per_class, scale=3)


with st.spinner("Generating samples for every class…"):
    real_grid, fake_grid = _grids(lab_key(lab), PER_CLASS)
gen = lab.generator
st.caption(
    f"Dataset **{lab.dataset.name}**: {len(lab.dataset)} images, {lab.n_classes} classes, "
    f"{lab.dataset.channels}×{lab.dataset.image_size}×{lab.dataset.image_size}. Generator: **{gen.source}** "
    f"({'class-conditional' if gen.conditional else 'unconditional'}, T = {gen.num_train_timesteps}). "
    f"Feature extractor test accuracy: {lab.extractor.test_accuracy or float('nan'):.1%}."
)
left, right = st.columns(2)
with left:
    st.subheader("Real (training split)")
    st.image(real_grid, caption=f"one row per class: {', '.join(lab.dataset.class_names)}", clamp=True)
with right:
    st.subheader("Generated (DDIM, 50 steps)")
    note = "one row per class" if gen.conditional else "labels from the feature classifier"
    st.image(fake_grid, caption=note, clamp=True)
if lab.generator_source is None:
    st.caption("The shipped generator was trained on the **whole labelled training split**: it saw more labelled data "
               "than any N-per-class classifier here (the *pool* regime). The Training runs page can instead train "
               "an *own* generator on the classifier's N-per-class images only.")

st.subheader("What the papers claim, and what our runs show")
dataset = lab.data_config.name
try:
    claims, meta = load_claims(dataset=dataset)
except ValueError as exc:
    st.info(f"No claims judged on **{dataset}** yet: {exc}")
else:
    st.caption(f"Claims judged on **{dataset}**, the dataset in use.")
    st.dataframe(pd.DataFrame([{"claim": c.claim, "verdict": c.verdict, "see it on": f"/{c.page}",
                                "setting": c.setting} for c in claims]), hide_index=True, key="home.claims",
                 column_config={"see it on": st.column_config.LinkColumn("see it on", display_text=r"/(.*)")})
    for c in claims:  # the numbers are too long for a table cell: one list per claim, setting by setting
        with st.expander(f"{c.claim} — **{c.verdict}**: the numbers"):
            st.markdown("\n".join(f"- {part.strip()}" for part in c.numbers.split("; ")))
    st.caption(f"From `genreg_core/analysis/claims.json` ({meta.get('setting', '')}). Each comparison pairs two "
               "methods on the same seeds: mean difference [95 % t-interval] (n seeds), in points of test accuracy. "
               "Reproduced / reversed when the whole interval lies beyond the practical threshold (1 point; "
               "tolerance 0.1) in the claimed / the opposite direction, not reproduced when it rules the claimed "
               "gain out, inconclusive when it straddles the threshold or fewer than 5 seeds pair. "
               "`python -m experiments.reproduce` reruns the grid.")

prefetch_first_view(lab)  # drawn last, so it does not slow this page: Feature space then opens at once
