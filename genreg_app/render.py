"""Small Streamlit renderers shared by pages (images with captions, downloads)."""

from __future__ import annotations

import json

import streamlit as st
import torch

from genreg_core.imaging import make_grid, png_bytes


def image_strip(images: torch.Tensor, captions: list[str], scale: int = 4, max_images: int = 12) -> None:
    """Show up to ``max_images`` images side by side with captions."""
    n = min(len(images), max_images)
    if n == 0:
        return
    cols = st.columns(n)
    for col, image, caption in zip(cols, images[:n], captions[:n]):
        col.image(make_grid(image[None], 1, scale=scale, pad=0), caption=caption)


def grid_with_download(images: torch.Tensor, n_cols: int, caption: str, file_name: str, key: str,
                       scale: int = 3) -> None:
    """An image grid and a PNG download button for it."""
    grid = make_grid(images, n_cols, scale=scale)
    st.image(grid, caption=caption)
    st.download_button("Download PNG", png_bytes(grid), file_name=file_name, mime="image/png", key=key)


def json_download(label: str, payload, file_name: str, key: str) -> None:
    st.download_button(label, json.dumps(payload, indent=2), file_name=file_name, mime="application/json", key=key)


def full_table(frame, **kwargs) -> None:
    """A dataframe tall enough to show every row without an inner scroll bar (up to 40 rows)."""
    st.dataframe(frame, hide_index=True, width="stretch", height=35 * (min(len(frame), 40) + 1) + 3, **kwargs)


def selected_point_ids(event) -> list[int]:
    """The global sample ids (``customdata[0]``) of the points selected in a Plotly chart, sorted.

    Plotly 7 delivers each point's ``customdata`` as an object keyed by position (``{"0": id}``); older
    versions as a list. Both are accepted.
    """
    ids = set()
    for point in (event.selection.points if event else []):
        data = point.get("customdata")
        if isinstance(data, dict):
            data = data.get("0", data.get(0))
        elif isinstance(data, (list, tuple)):
            data = data[0] if data else None
        if data is not None:
            ids.add(int(data))
    return sorted(ids)
