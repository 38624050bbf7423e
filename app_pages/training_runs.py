"""Live training runs: launch classifier runs from the browser, watch them learn, stop, compare, export."""

import dataclasses
import json
import os

import pandas as pd
import streamlit as st

from genreg_app.runs import guarded, run_label, run_store, store_errors
from genreg_app.state import current_lab
from genreg_app.url_state import UrlState, list_of
from genreg_core.config import AdaRandOptions, RandRegOptions, TrainConfig
from genreg_core.diffusion.perturbation import KINDS, NORMS
from genreg_core.evaluation.statistics import SPREAD_NOTE
from genreg_core.plots import quality_chart, run_curves
from genreg_core.runs.engines import ENGINES
from genreg_core.runs.grid import GridSpec, expand_cells, grid_status, grid_table, launch_grid, progress_of
from genreg_core.runs.store import EPOCH_KEYS, RunSpec, summarize_runs
from genreg_core.runs.worker import DEFAULT_MAX_CONCURRENT, launch_run
from genreg_core.training.methods import GENERATOR_METHODS, METHODS

st.title("Live training runs")
st.markdown(
    "Train the same small CNN on a small-data setting with different methods and compare them honestly: "
    "every method uses the same backbone, schedule and split, and the reported number is the **test accuracy at "
    "the epoch of lowest validation loss**. Runs execute in background processes and are recorded in an MLflow "
    "store, so they survive page reloads and are shared by every browser tab."
)
lab = current_lab()
GRID_ENGINE = os.environ.get("GENREG_GRID_ENGINE", "local")  # the engine the grid picker starts on
GRID_ENGINE = GRID_ENGINE if GRID_ENGINE in ENGINES else "local"


with store_errors():
    store = run_store()
defaults = TrainConfig()

with st.form("tr.form"):
    c1, c2, c3, c4, c5, c6 = st.columns([3, 1, 1, 1.2, 1.4, 1.4], vertical_alignment="bottom")
    methods = c1.multiselect("Methods", list(METHODS), default=["ce", "adarand"], key="tr.methods",
                             help="\n".join(f"- **{m}**: {cls.note}" for m, cls in METHODS.items()))
    setting = c2.selectbox("Images per class", [5, 10, 25, "all"], index=1, key="tr.per_class")
    seeds_text = c3.text_input("Seeds (comma separated)", "0", key="tr.seeds")
    epochs = c4.slider("Epochs", 1, 100, defaults.epochs, key="tr.epochs")
    init = c5.selectbox("Initial backbone", ["scratch", "pretrained"], key="tr.init",
                        index=["scratch", "pretrained"].index(defaults.init),
                        format_func={"scratch": "scratch (random weights)",
                                     "pretrained": "pretrained (self-supervised, fine-tune)"}.get,
                        help="pretrained: the backbone learned without labels (SimCLR) on the unlabelled training "
                             "split, then fine-tuned (AdaRand's and MGR's setting); AdaRand's μ, σ start from its "
                             "features.")
    regime = c6.selectbox("Generator regime", ["pool", "own"], key="tr.regime",
                          format_func={"pool": "pool (sidebar generator)", "own": "own (N-per-class only)"}.get,
                          help="pool: the sidebar's generator — the shipped one was trained on the whole labelled "
                               "training split, so it saw more labelled data than the classifier. own: a generator "
                               "trained only on the run's own N-per-class images, in the background before the run "
                               "(a few CPU minutes, cached by data, N and seed). Only GDA and MGR use it.")
    with st.expander("Hyper-parameters (the method specs' defaults)"):
        h1, h2, h3, h4 = st.columns(4)
        lr = h1.number_input("Learning rate", 1e-5, 1.0, defaults.lr, format="%.4f", key="tr.lr")
        batch = h1.number_input("Batch size", 4, 512, defaults.batch_size, key="tr.batch")
        gda_ratio = h2.number_input("GDA ratio ρ", 0.0, 8.0, defaults.gda.ratio, key="tr.gda_ratio")
        reg_weight = h2.number_input("RandReg / AdaRand λ", 0.0, 100.0, defaults.randreg.weight, key="tr.reg")
        alpha = h3.number_input("AdaRand α", 0.0, 1.0, defaults.adarand.alpha, key="tr.alpha")
        prior_lr = h3.number_input("AdaRand prior lr", 1e-5, 1.0, defaults.adarand.prior_lr, format="%.4f",
                                   key="tr.prior_lr")
        mgr_weight = h4.number_input("MGR λ", 0.0, 100.0, defaults.mgr.weight, key="tr.mgr_weight")
        mgr_steps = h4.number_input("MGR DDIM steps", 1, 50, defaults.mgr.sampler_steps, key="tr.mgr_steps")
        mgr_period = h4.number_input("MGR meta period", 1, 100, defaults.mgr.meta_period, key="tr.mgr_period")
        mgr_teaching = h4.checkbox("MGR teaching setting", key="tr.mgr_teaching",
                                   help="3 finder updates per step at finder lr 3e-2 (30×): the selected latents "
                                        "move visibly away from the random ones; about 3× slower.")
        s1, s2, s3, s4 = st.columns(4)
        sem_kind = s1.selectbox("Semantic perturbation", list(KINDS), key="tr.sem_kind")
        sem_norm = s1.selectbox("Semantic ball", list(NORMS), index=list(NORMS).index(defaults.semantic.norm),
                                key="tr.sem_norm")
        sem_eps = s2.number_input("Semantic ε (0 = the paper's default for the kind)", 0.0, 10.0, 0.0, format="%.3f",
                                  key="tr.sem_eps")
        sem_ratio = s2.number_input("Semantic mix ratio ρ (perturbed share)", 0.0, 1.0, defaults.semantic.ratio,
                                    key="tr.sem_ratio")
        sem_tau = s3.number_input("Semantic inversion depth τ", 1, 1000, defaults.semantic.tau, key="tr.sem_tau")
        gssl_weight = s3.number_input("GSSL λ", 0.0, 100.0, defaults.gssl.weight, key="tr.gssl_weight")
        gssl_sim = s4.number_input("GSSL similarity-to-real γ", 0.0, 100.0, defaults.gssl.sim_weight,
                                   key="tr.gssl_sim")
        gssl_lr = s4.number_input("GSSL latent step β", 1e-4, 1.0, defaults.gssl.latent_lr, format="%.4f",
                                  key="tr.gssl_lr")
    max_concurrent = st.number_input("Runs at once (the rest queue)", 1, 8, DEFAULT_MAX_CONCURRENT, key="tr.max")
    launch = st.form_submit_button("Launch", type="primary")
    st.markdown("**Or as a grid**: methods × images per class × seeds, resumable (cells already finished in the "
                "store are skipped), on an engine (`genreg grid`; docs/grids.md).")
    g1, g2, g3 = st.columns([3, 1, 1], vertical_alignment="bottom")
    grid_settings = g1.multiselect("Grid: images per class", [5, 10, 25, "all"], default=[5], key="tr.grid.per_class")
    grid_engine = g2.selectbox("Engine", list(ENGINES), index=list(ENGINES).index(GRID_ENGINE), key="tr.grid.engine",
                               help="local: this machine's background workers; ray: one Ray task per run on the "
                                    "cluster of RAY_ADDRESS (else a local Ray)")
    launch_grid_button = g3.form_submit_button("Launch grid")

if launch or launch_grid_button:
    try:
        seeds = sorted({int(s) for s in seeds_text.replace(" ", "").split(",") if s})
    except ValueError:
        seeds = []
    if not methods or not seeds:
        st.error("Pick at least one method and give integer seeds, e.g. 0, 1, 2.")
    elif launch_grid_button and not grid_settings:
        st.error("Pick at least one number of images per class for the grid.")
    else:
        base = TrainConfig(
            per_class=None if setting == "all" else int(setting), epochs=int(epochs), lr=float(lr),
            batch_size=int(batch), init=init, generator_regime=regime,
            gda=dataclasses.replace(defaults.gda, ratio=float(gda_ratio)),
            randreg=RandRegOptions(weight=float(reg_weight)),
            adarand=AdaRandOptions(alpha=float(alpha), prior_lr=float(prior_lr)),
            mgr=dataclasses.replace(defaults.mgr, weight=float(mgr_weight), sampler_steps=int(mgr_steps),
                                    meta_period=int(mgr_period)),
            semantic=dataclasses.replace(defaults.semantic, perturbation=sem_kind, norm=sem_norm,
                                         eps=float(sem_eps) or None, ratio=float(sem_ratio), tau=int(sem_tau)),
            gssl=dataclasses.replace(defaults.gssl, weight=float(gssl_weight), sim_weight=float(gssl_sim),
                                     latent_lr=float(gssl_lr)))
        base = base.mgr_teaching() if mgr_teaching else base
        if launch_grid_button:
            grid = GridSpec(methods=tuple(methods), seeds=tuple(seeds), inits=(init,), regimes=(regime,),
                            per_class=tuple(None if n == "all" else int(n) for n in grid_settings),
                            epochs=int(epochs), data=lab.data_config, split_seed=lab.data_config.split_seed,
                            base=base, generator=lab.generator_source, device=str(lab.device.type))
            with store_errors(stop=False):
                launch_grid(store, grid, grid_engine)
                st.session_state["tr.grid"] = grid
                st.toast(f"Launched a grid of {len(expand_cells(grid))} cell(s) on {grid_engine}.")
        with store_errors(stop=False):
            for method in methods if launch else []:
                for seed in seeds:
                    spec = RunSpec(dataclasses.replace(base, method=method, seed=seed), lab.data_config,
                                   lab.generator_source, str(lab.device.type))
                    launch_run(store, spec, int(max_concurrent))
            st.toast(f"Launched {len(methods) * len(seeds)} run(s).")

with store_errors():
    live = any(r.status in ("queued", "running") for r in store.list_runs())


def _follow(labels: list[str], active: list[str]) -> list[str]:
    """The runs to compare (by label): the user's choice, plus every run launched since the last rerun while
    following is on. ``labels`` are the store's runs, newest first; ``active`` the queued and running ones."""
    seen = st.session_state.get("tr.seen")
    if seen is None or "tr.compare" not in st.session_state:  # first view: the active and the newest runs
        chosen = active + labels[:6]
    else:
        chosen = list(st.session_state["tr.compare"])
        if st.session_state.get("tr.follow", True):
            chosen += [label for label in labels if label not in seen]
    st.session_state["tr.seen"] = set(labels)
    return list(dict.fromkeys(label for label in chosen if label in labels))  # deleted runs drop out, order kept


def _keep_choice(key: str, value: list[str]) -> None:
    """Set a picker's choice only when it changes. The panel reruns every 2 s while runs are live; re-sending an
    unchanged choice from a rerun that started before the user's last pick would overwrite that pick."""
    if st.session_state.get(key) != value:
        st.session_state[key] = value


def _accuracy_text(mean: float, std: float, n: int) -> str:
    return f"{mean:.2%} ± {std:.2%}" if n > 1 else f"{mean:.2%} (one run: no spread)"


@st.fragment(run_every=2.0 if live else None)
@guarded
def runs_panel() -> None:
    url = UrlState("tr", ["run"])  # inside the fragment: its notice and link are drawn here
    runs = store.list_runs()
    if not runs:
        st.info("No runs yet: pick methods above and press Launch.")
        url.finish(link=False)
        return
    table = pd.DataFrame([r.as_dict() for r in runs])
    table["progress"] = table["epoch"] / table["epochs"].clip(lower=1)
    table[["error", "generator_progress"]] = table[["error", "generator_progress"]].fillna("")
    st.subheader("Runs")
    st.dataframe(
        table[["name", "status", "dataset", "generator", "method", "per_class", "seed", "generator_regime",
               "generator_progress", "progress", "best_val_loss", "test_accuracy", "error", "run_id"]],
        hide_index=True, width="stretch",
        column_config={"progress": st.column_config.ProgressColumn("progress", min_value=0, max_value=1),
                       "test_accuracy": st.column_config.NumberColumn("test acc @ best val", format="%.4f")})
    by_label = {run_label(r): r.run_id for r in runs}
    names = {run_id: label for label, run_id in by_label.items()}
    a1, a2, a3 = st.columns([4, 1, 1], vertical_alignment="bottom")
    if "tr.act" in st.session_state:  # runs deleted here or in another tab drop out of the choice
        _keep_choice("tr.act", [label for label in st.session_state["tr.act"] if label in by_label])
    acted = [by_label[label] for label in
             a1.multiselect("Runs to stop or delete", list(by_label), key="tr.act", placeholder="pick runs")]
    if a2.button("Stop", key="tr.stop", disabled=not acted, width="stretch"):
        for run_id in acted:
            store.request_stop(run_id)
        st.toast("Stop requested; runs stop within one step.")
    if a3.button("Delete…", key="tr.delete", disabled=not acted, width="stretch"):
        st.session_state["tr.confirm_delete"] = list(acted)
    pending = [i for i in st.session_state.get("tr.confirm_delete", []) if i in names]
    if pending:
        st.warning(f"Delete {len(pending)} run(s) and everything they logged? "
                   + ", ".join(names[i] for i in pending), icon=":material/delete:")
        c1, c2, _ = st.columns([1, 1, 4])
        if c1.button("Delete for good", key="tr.delete_confirm", type="primary"):
            for run_id in pending:
                store.delete_run(run_id)
            st.session_state.pop("tr.confirm_delete")
            st.rerun()
        if c2.button("Cancel", key="tr.delete_cancel"):
            st.session_state.pop("tr.confirm_delete")
            st.rerun()

    _keep_choice("tr.compare", _follow(list(by_label),
                                       [names[r.run_id] for r in runs if r.status in ("queued", "running")]))
    f1, f2 = st.columns([4, 1], vertical_alignment="bottom")
    label_of = {r.run_id: run_label(r) for r in runs}
    url.bind("run", "tr.compare", lambda text: [label_of[i] for i in list_of(list(label_of))(text)],
             encode=lambda labels: ",".join(by_label[label] for label in labels if label in by_label))
    chosen = [by_label[label] for label in f1.multiselect("Compare runs", list(by_label), key="tr.compare")]
    f2.toggle("Follow new runs", value=True, key="tr.follow",
              help="Add every newly launched run to the comparison as it appears.")
    if chosen:
        extra = sorted({k for run_id in chosen for k in store.metric_keys(run_id)
                        if not k.startswith("step/") and k not in EPOCH_KEYS and k not in
                        ("epoch", "best_val_loss", "test_accuracy_at_best", "best_epoch", "run_seconds",
                         "run_cpu_seconds")})
        diagnostics = st.multiselect("Method diagnostics", extra, key="tr.diag")
        keys = list(EPOCH_KEYS) + diagnostics
        histories = {names[run_id]: store.history(run_id, tuple(keys)) for run_id in chosen}
        st.plotly_chart(run_curves(histories, keys, titles={"test_accuracy": "test_accuracy (read once, at the best "
                                                                             "val-loss epoch, after training)"}),
                        key="tr.curves")
    summary = summarize_runs(runs)
    if summary:
        st.subheader("Summary: test accuracy at best validation loss")
        frame = pd.DataFrame(summary)
        frame["test accuracy"] = [_accuracy_text(m, s, n) for m, s, n in
                                  zip(frame.test_accuracy_mean, frame.test_accuracy_std, frame.runs)]
        st.dataframe(frame[["dataset", "generator", "generator_fidelity", "method", "per_class", "generator_regime",
                            "runs", "test accuracy", "seeds"]], hide_index=True,
                     column_config={"generator_fidelity": st.column_config.NumberColumn("generator fidelity",
                                                                                       format="percent")})
        st.caption(SPREAD_NOTE)
        here = [r for r in summary if r["dataset"] == lab.data_config.name]  # the dial of the dataset in use
        dial = {r["generator_fidelity"] for r in here
                if r["method"] in GENERATOR_METHODS and r["generator_fidelity"] is not None}
        if len(dial) > 1:
            st.subheader(f"Accuracy vs generator quality ({lab.data_config.name})")
            st.plotly_chart(quality_chart(here, GENERATOR_METHODS), key="tr.quality")
            st.caption("The generator-quality dial (ours; the papers are silent): each point is the runs of one "
                       "method and setting with one generator, placed at that generator's measured class fidelity "
                       "(docs/models.md); ± one sample std over seeds. Dashed: methods that use no generator. Launch "
                       "runs with the sidebar's early checkpoint to add the weak end.")
    url.finish()
    e1, e2 = st.columns(2)
    e1.download_button("Export run table (CSV)", table.drop(columns=["progress"]).to_csv(index=False), "runs.csv",
                       "text/csv", key="tr.csv")
    e2.download_button("Export compared runs with histories (JSON)",
                       json.dumps([{**r.as_dict(), "history": store.history(r.run_id)} for r in runs
                                   if r.run_id in chosen]), "runs.json", "application/json", key="tr.json")


@st.fragment(run_every=2.0)
@guarded
def grid_panel() -> None:
    """The grid launched last from this tab: its progress and its table as it fills, read from the store."""
    grid_id, cells = grid_status(store, st.session_state["tr.grid"])
    progress = progress_of(cells)
    st.subheader(f"Grid {grid_id}")
    st.progress(progress.done / max(1, len(cells)), text=progress.line())
    table = grid_table([c.row() for c in cells if c.status == "finished"])
    if table:
        frame = pd.DataFrame(table)
        frame["per_class"] = frame["per_class"].map(lambda n: "all" if n is None or n != n else str(int(n)))
        frame["test accuracy"] = [_accuracy_text(m, s, n) for m, s, n in
                                  zip(frame.test_accuracy_mean, frame.test_accuracy_std, frame.runs)]
        st.dataframe(frame[["init", "regime", "method", "per_class", "runs", "test accuracy"]], hide_index=True,
                     key="tr.grid.table")
        st.caption(SPREAD_NOTE)
    failed = [c for c in cells if c.status == "failed"]
    if failed:
        st.warning("\n".join(f"- {c.cell.label()}: {c.error}" for c in failed))


if "tr.grid" in st.session_state:
    grid_panel()
runs_panel()
st.caption(f"Store: `{store.tracking_uri}` — browse it with `mlflow ui --backend-store-uri {store.tracking_uri}` "
           "(needs the full `mlflow` package).")
