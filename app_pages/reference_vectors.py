"""AdaRand reference vectors: replay how the class-conditional priors and the features move during training."""

import pandas as pd
import streamlit as st

from genreg_app.runs import pick_run, run_store
from genreg_app.state import current_lab
from genreg_app.url_state import UrlState, int_in
from genreg_core.analysis.reference_vectors import replay_references
from genreg_core.plots import reference_scatter, run_curves

st.title("AdaRand reference vectors")
st.markdown(
    "*Adaptive Random Feature Regularization on Fine-tuning Deep Neural Networks* (Yamaguchi et al., CVPR 2024) "
    "pulls each feature g(x) toward a reference z drawn from a class-conditional Gaussian N(μ_y, σ_y²). The means "
    "μ start at the initial model's class means and are trained on their own: they **follow** the running class "
    "means μ̄ of the features and **spread** apart from each other (cosine terms of the prior loss). Replay a run "
    "epoch by epoch: stars are μ, diamonds μ̄, crosses sampled references, dots the features of a fixed probe set."
)
lab = current_lab()
url = UrlState("rv", ["run", "epoch"])
run_id = pick_run(lab, ("adarand", "mgr+adarand"), "AdaRand run", key="rv.run", url=url)


@st.cache_data(show_spinner="Projecting the snapshots…", max_entries=8)
def _replay(run_id: str, n_epochs: int):
    return replay_references(run_store().load_snapshots(run_id))


n_snapshots = run_store().n_snapshots(run_id)
try:
    replay = _replay(run_id, n_snapshots)
except ValueError as exc:
    st.error(str(exc))
    st.stop()
url.bind("epoch", "rv.epoch", int_in(1, len(replay.epochs)))
url.finish()
epoch = st.slider("Epoch", 1, len(replay.epochs), len(replay.epochs), key="rv.epoch")
i = epoch - 1
st.plotly_chart(reference_scatter(replay.probe_xy[i], replay.probe_labels, replay.mu_xy[i], replay.mu_bar_xy[i],
                                  replay.reference_xy[i], replay.reference_labels, lab.dataset.class_names),
                key="rv.scatter")
st.caption("One PCA frame fitted on all epochs together, so positions are comparable across epochs.")
keys = ["prior_follow", "prior_spread", "mu_norm", "feature_norm", "feature_to_mu", "nearest_mu_accuracy"]
history = {k: [(e, row[k]) for e, row in zip(replay.epochs, replay.stats)] for k in keys}
st.subheader("Over training")
st.plotly_chart(run_curves({"run": history}, keys, n_cols=3), key="rv.curves")
st.dataframe(pd.DataFrame([{"epoch": e, **row} for e, row in zip(replay.epochs, replay.stats)]), hide_index=True)
