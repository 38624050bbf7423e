"""The sidebar (dataset, generator, device picked once for all pages) and the cached lab."""

from __future__ import annotations

import json
from dataclasses import asdict

import streamlit as st

from genreg_core.config import DataConfig
from genreg_core.data.uploads import unpack_upload
from genreg_core.lab import EARLY_GENERATOR, Lab, open_lab
from genreg_core.paths import genreg_home

DATASET_CHOICES = {
    "digits": "Digits (bundled, 16×16)",
    "fashion-mnist": "Fashion-MNIST (bundled subset, 28×28)",
    "folder": "Image folder on this machine",
    "zip": "Upload an image folder (.zip)",
}
GENERATOR_CHOICES = {
    "shipped": "Shipped model of the dataset",
    "early": "Shipped model, early checkpoint (weaker: the quality dial)",
    "local": "Local diffusers folder",
    "hub": "Hugging Face hub id (online)",
}
PRECISION_CHOICES = {"auto": "auto (bf16 on CUDA, fp32 on CPU)", "fp32": "fp32", "bf16": "bf16"}
COMPILE_CHOICES = {"auto": "auto (CUDA, large jobs)", "on": "on", "off": "off"}
# the sidebar's widget keys. Every page draws the sidebar, and Streamlit gives a widget drawn by another page script
# another identity: its value is dropped on navigation (and, after a fragment's reruns, even when re-assigned before
# the widget), so each choice is also kept under KEPT + key, a plain session-state value that nothing drops
SIDEBAR_KEYS = ("genreg.dataset", "genreg.fashion_root", "genreg.folder", "genreg.image_size", "genreg.generator",
                "genreg.generator_source", "genreg.device", "genreg.precision", "genreg.compile")
KEPT = "genreg.kept."
UPLOAD_ROOT = "genreg.upload_root"  # the folder of the last unpacked upload (a file uploader cannot be re-assigned)


@st.cache_resource(show_spinner="Loading data, generator and feature extractor…", max_entries=4)
def _cached_lab(data_config_json: str, generator_source: str | None, device: str, precision: str = "auto",
                compile: str = "auto") -> Lab:
    """One lab per choice, shared by all sessions: a compiled UNet's warm-up is paid once per process."""
    return open_lab(DataConfig(**json.loads(data_config_json)), generator_source, device, precision=precision,
                    compile={"auto": None, "on": True, "off": False}[compile])


def sidebar() -> tuple[DataConfig, str | None, str, str, str]:
    """Draw the shared sidebar and return (data config, generator source, device, precision, compile)."""
    _restore_choices()
    with st.sidebar:
        st.header("Data and models")
        kind = st.selectbox("Dataset", list(DATASET_CHOICES), format_func=DATASET_CHOICES.get, key="genreg.dataset")
        config = DataConfig()
        if kind == "fashion-mnist":
            idx_root = st.text_input("Full set: folder of the four IDX files (empty = the bundled subset)",
                                     key="genreg.fashion_root", placeholder="/usr/share/datasets/fashion-mnist")
            config = DataConfig(name="fashion-mnist", root=idx_root or None)
        elif kind == "folder":
            root = st.text_input("Folder (ROOT/<class>/*.png)", key="genreg.folder")
            config = DataConfig(name="imagefolder", root=root or None)
        elif kind == "zip":
            upload = st.file_uploader("Zip of ROOT/<class>/*.png", type=["zip"], key="genreg.upload")
            root = st.session_state.get(UPLOAD_ROOT)
            if upload is not None:
                try:
                    unpacked = unpack_upload(upload.getvalue(), genreg_home())
                    root = st.session_state[UPLOAD_ROOT] = str(unpacked.root)
                    show_skipped(unpacked.skipped)
                except ValueError as exc:
                    root = None
                    st.error(str(exc))
            elif root:
                st.caption("Using the zip uploaded earlier in this session.")
            config = DataConfig(name="imagefolder", root=root)
        if kind not in ("digits", "fashion-mnist"):
            size = st.number_input("Image size", 8, 128, 16, step=4, key="genreg.image_size")
            config.image_size = int(size)
        gen_kind = st.selectbox("Generator", list(GENERATOR_CHOICES), format_func=GENERATOR_CHOICES.get,
                                key="genreg.generator")
        source = EARLY_GENERATOR if gen_kind == "early" else None
        if gen_kind in ("local", "hub"):
            label = "diffusers folder (UNet2DModel or DDPMPipeline)" if gen_kind == "local" else "hub id"
            source = st.text_input(label, key="genreg.generator_source") or None
        device = st.selectbox("Device", ["auto", "cpu", "cuda"], key="genreg.device")
        precision = st.selectbox("Precision", list(PRECISION_CHOICES), format_func=PRECISION_CHOICES.get,
                                 key="genreg.precision", help="UNet arithmetic when sampling")
        compile = st.selectbox("Compile the UNet", list(COMPILE_CHOICES), format_func=COMPILE_CHOICES.get,
                               key="genreg.compile", help="torch.compile: a warm-up once, then faster sampling")
    for key in SIDEBAR_KEYS:
        if key in st.session_state:
            st.session_state[KEPT + key] = st.session_state[key]
    return config, source, device, precision, compile


def _restore_choices() -> None:
    """Give the sidebar's widgets the choices made on any page: the widget's own value, else the kept copy."""
    for key in SIDEBAR_KEYS:
        value = st.session_state[key] if key in st.session_state else st.session_state.get(KEPT + key)
        if value is not None:
            st.session_state[key] = value


def show_skipped(skipped: list) -> None:
    """A warning naming every entry of a data folder or upload that was not read (never dropped silently)."""
    if skipped:
        st.warning(f"{len(skipped)} entries were not read:\n" + "\n".join(f"- `{e.path}`: {e.reason}" for e in skipped))


def show_dataset(lab: Lab) -> None:
    """The loaded dataset's image count per class, and the entries of its folder that were not read."""
    with st.sidebar:
        counts = lab.dataset.class_counts()
        st.caption(f"{len(lab.dataset):,} images: " + ", ".join(f"{name} {n}" for name, n in counts.items()))
        show_skipped(lab.dataset.skipped)


def current_lab() -> Lab:
    """The lab for the sidebar's choices (cached); shows a clear error and stops the page on bad input."""
    config, source, device, precision, compile = sidebar()
    if config.name == "imagefolder" and not config.root:
        st.info("Choose an image folder in the sidebar to continue.")
        st.stop()
    try:
        lab = _cached_lab(json.dumps(asdict(config), sort_keys=True), source, device, precision, compile)
    except ValueError as exc:
        st.error(str(exc))
        st.stop()
    show_dataset(lab)
    return lab


def lab_key(lab: Lab) -> str:
    """A stable string identifying the lab's data and generator, for ``st.cache_data`` keys."""
    return lab.key()
