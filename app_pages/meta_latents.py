"""Meta-selected latents: MGR's meta pseudo sampling against the random latents it starts from."""

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from genreg_app.runs import pick_run, run_store
from genreg_app.state import current_lab, lab_key
from genreg_app.url_state import UrlState, int_in
from genreg_core.analysis.meta_latents import (
    META_METHODS,
    finder_is_static,
    replay_meta_latents,
    snapshot_sampler_steps,
)
from genreg_core.imaging import make_grid
from genreg_core.plots import latent_scatter
from genreg_core.training.generator_regime import run_generator

st.title("Meta-selected latents (MGR, GSSL)")
st.markdown(
    "*Regularizing Neural Networks with Meta-Learning Generative Models* (Yamaguchi et al., NeurIPS 2023) does not "
    "use random synthetic samples: a finder network F_ω maps random latents u to latents whose samples, used in a "
    "feature-consistency regularizer, **lower the validation loss after a one-step lookahead**. Here each recorded "
    "batch is shown twice — decoded from the random u and from the selected F_ω(u), same class, same DDIM chain — "
    "so the difference is the finder's doing. *Generative Semi-supervised Learning with Meta-Optimized Synthetic "
    "Samples* (ACML 2023) drops the finder and moves the latents themselves, by the same lookahead plus a "
    "similarity-to-real term: for a GSSL run, u is a latent's initial draw and the selected one its optimized value."
)
lab = current_lab()
url = UrlState("ml", ["run", "epoch"])
run_id = pick_run(lab, META_METHODS, "MGR or GSSL run", key="ml.run", url=url)
gssl = run_store().load_spec(run_id).train.method == "gssl"
u_name, selected_name = ("initial z₀", "optimized z") if gssl else ("random latents u", "meta-selected F_ω(u)")


@st.cache_data(show_spinner="Decoding the random latents…", max_entries=8)
def _replay(key: str, run_id: str, n_epochs: int):
    train = run_store().load_spec(run_id).train
    generator = run_generator(lab, train)  # the run's regime: the lab's generator, or its own cached one
    return replay_meta_latents(lab, run_store().load_snapshots(run_id), snapshot_sampler_steps(train),
                               generator=generator)


n_snapshots = run_store().n_snapshots(run_id)
try:
    replay = _replay(lab_key(lab), run_id, n_snapshots)
except ValueError as exc:
    st.error(str(exc))
    st.stop()

st.subheader("Does the finder move, and does it help?")
shift_col, share_col = st.columns(2)
shift_fig = go.Figure(go.Scatter(x=replay.epochs, y=replay.latent_shift, mode="lines+markers", name="RMS shift"))
shift_fig.update_layout(height=280, xaxis_title="epoch", yaxis_title="RMS latent shift ‖F_ω(u) − u‖",
                        margin=dict(l=10, r=10, t=30, b=10))
shift_col.plotly_chart(shift_fig, key="ml.shift")
share_fig = go.Figure(go.Bar(x=replay.epochs, y=replay.beats_random))
share_fig.add_hline(y=0.5, line_dash="dot", annotation_text="chance")
share_fig.update_layout(height=280, xaxis_title="epoch", yaxis_title="share of meta steps", yaxis_range=[0, 1],
                        margin=dict(l=10, r=10, t=30, b=10))
share_col.plotly_chart(share_fig, key="ml.share")
st.caption("Left: how far the finder moves the latents (u has unit variance). Right: the share of the epoch's meta "
           "steps where a lookahead on the selected samples G(F_ω(u), c) lowered the validation loss more than the "
           "same lookahead on the random ones G(u, c) (same classes, real batch and augmentations); 0.5 is chance, "
           "empty when the run did not record the comparison.")
if finder_is_static(replay):
    st.warning(
        "**The finder has not moved** (RMS latent shift below 0.05 in every epoch). Then the meta-selected samples are "
        "the random ones, and the influence bars and the share above are noise. This is what the default setting "
        "gives here: the finder only gets the gradient of the validation loss *through one lookahead step* of the "
        "classifier (a second-order term scaled by the classifier's learning rate and by λ), and its Adam steps of "
        "lr 1e-3 add up to little in a short run. It means MGR behaves like PCR on random synthetic samples, not "
        "that meta pseudo sampling is wrong. Launch a run with the **MGR teaching setting** (Training runs page: "
        "3 finder updates per step, finder lr 3e-2) to see the latents move.", icon=":material/info:")

url.bind("epoch", "ml.epoch", int_in(1, len(replay.epochs)))
url.finish()
epoch = st.slider("Epoch (its last meta step)", 1, len(replay.epochs), len(replay.epochs), key="ml.epoch")
i = epoch - 1
names = lab.dataset.class_names
order = np.argsort(replay.classes[i], kind="stable")
left, right = st.columns(2)
left.image(make_grid(replay.random[i][order], 8, scale=4),
           caption=f"{u_name} → G(·, c); classes " + ", ".join(names[c] for c in replay.classes[i][order]))
right.image(make_grid(replay.selected[i][order], 8, scale=4),
            caption=f"{selected_name} → G(·, c); RMS latent shift {replay.latent_shift[i]:.3f} (epoch mean)")

st.subheader("Where they fall in feature space")
st.plotly_chart(latent_scatter(replay.real_xy, replay.real_labels, replay.random_xy[i], replay.selected_xy[i],
                               replay.classes[i], names), key="ml.scatter")
table = pd.DataFrame([{"samples": name, **{k: v for k, v in m.items() if k in
                                             ("precision", "recall", "density", "coverage", "frechet_distance")}}
                      for name, m in replay.metrics.items()])
st.dataframe(table, hide_index=True)
st.caption("Against 50 real training images per class, pooled over all recorded epochs.")

st.subheader("Losses")
c1, c2 = st.columns(2)
before = np.concatenate(replay.val_loss_before)
after = np.concatenate(replay.val_loss_after)
fig = go.Figure([go.Scatter(y=before, name="validation loss before lookahead", mode="lines"),
                 go.Scatter(y=after, name="after lookahead on the selected samples", mode="lines")])
fig.update_layout(height=320, xaxis_title="meta step", margin=dict(l=10, r=10, t=30, b=10))
c1.plotly_chart(fig, key="ml.losses")
influence = replay.influence[i]
bars = go.Figure(go.Bar(x=[f"#{j} ({names[c]})" for j, c in enumerate(replay.classes[i])], y=influence,
                        marker_color=np.where(influence < 0, "#2ca02c", "#d62728")))
bars.update_layout(height=320, yaxis_title=f"influence (−λ ∇CE_val·∇ℓ_{'cos' if gssl else 'PCR'})",
                   margin=dict(l=10, r=10, t=30, b=10))
c2.plotly_chart(bars, key="ml.influence")
st.caption("Green samples lower the validation loss (negative influence), red ones raise it.")
