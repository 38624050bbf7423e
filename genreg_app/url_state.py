"""A page's main controls mirrored in the URL (``st.query_params``), so that a link restores the view.

A page declares its URL keys once (``UrlState(scope, keys)``), then, just before each mirrored widget, calls
``bind(key, widget_key, parse)``: a value the URL brings is parsed and, when valid, put into the widget's session
state, so the widget opens on it. ``finish()`` writes the widgets' current values back into the URL, shows one
notice listing what it ignored (unknown keys, bad values) and offers the link. Parsers raise ``ValueError``; no
value from a URL ever reaches a page unparsed.
"""

from __future__ import annotations

import math
import re
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any

import streamlit as st

MAX_VALUE_CHARS = 200  # longer URL values are refused before parsing
Parse = Callable[[str], Any]


def int_in(low: int, high: int) -> Parse:
    """A URL integer in ``[low, high]`` (``1e99``, ``-5`` or ``5.0`` are refused when out of range or not integers)."""

    def parse(text: str) -> int:
        if not re.fullmatch(r"-?[0-9]{1,12}", text):  # ASCII digits only (not "٣")
            raise ValueError(f"expected an integer in [{low}, {high}]")
        value = int(text)
        if not low <= value <= high:
            raise ValueError(f"must lie in [{low}, {high}]")
        return value

    return parse


def float_in(low: float, high: float) -> Parse:
    """A finite URL number in ``[low, high]``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"expected a number in [{low:g}, {high:g}]") from None
        if not math.isfinite(value) or not low <= value <= high:
            raise ValueError(f"must be a finite number in [{low:g}, {high:g}]")
        return value

    return parse


def one_of(options: Sequence[Any]) -> Parse:
    """One of ``options``, matched by its string form (``"3"`` for the option ``3``)."""
    by_text = {str(option): option for option in options}

    def parse(text: str) -> Any:
        if text not in by_text:
            if len(by_text) > 12:
                raise ValueError(f"not one of the {len(by_text)} known values")
            raise ValueError(f"expected one of {', '.join(by_text) or 'nothing (none available)'}")
        return by_text[text]

    return parse


def list_of(options: Sequence[Any]) -> Parse:
    """A comma-separated list of ``options`` (empty for none)."""
    item = one_of(options)

    def parse(text: str) -> list:
        return [item(part) for part in text.split(",") if part]

    return parse


def _to_url(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _shown(text: str) -> str:
    """A URL value safe to echo in a notice: at most 40 characters, as ``repr`` writes them."""
    return repr(text[:40] + ("…" if len(text) > 40 else ""))


class UrlState:
    """The URL mirror of one page's controls (see the module docstring)."""

    def __init__(self, scope: str, keys: Sequence[str]):
        self.scope, self.keys = scope, tuple(keys)
        self.bound: dict[str, str] = {}  # URL key -> widget key, for the widgets drawn this run
        self.encode: dict[str, Callable[[Any], str]] = {}
        self.ignored: list[str] = []
        self.notice = st.empty()  # the notice goes here, above the page's controls
        last = st.session_state.get(self._last_key, {})
        incoming = {key: st.query_params.get(key, "") for key in st.query_params.keys()}
        # a value the URL brings that this page did not write itself: a link was opened or the URL edited
        self.pending = {key: value for key, value in incoming.items() if last.get(key) != value}
        for key in self.pending:
            if key not in self.keys:
                self.ignored.append(f"unknown key {_shown(key)}")
        self.pending = {key: value for key, value in self.pending.items() if key in self.keys}

    @property
    def _last_key(self) -> str:
        return f"url.{self.scope}.last"

    def bind(self, key: str, widget_key: str, parse: Parse, encode: Callable[[Any], str] = _to_url) -> None:
        """Mirror the widget ``widget_key`` under ``key``; call it just before the widget is drawn."""
        if key not in self.keys:
            raise ValueError(f"URL key {key!r} is not declared for {self.scope!r}")
        self.bound[key], self.encode[key] = widget_key, encode
        text = self.pending.pop(key, None)
        if text is None:
            return
        if len(text) > MAX_VALUE_CHARS:
            self.ignored.append(f"{key}: a value of {len(text):,} characters")
            return
        try:
            st.session_state[widget_key] = parse(text)
        except ValueError as exc:
            self.ignored.append(f"{key}={_shown(text)} ({exc})")

    def values(self) -> dict[str, str]:
        """The bound widgets' current values, as URL strings (widgets without a value left out)."""
        out = {}
        for key, widget_key in self.bound.items():
            value = st.session_state.get(widget_key)
            if value is not None:
                out[key] = self.encode[key](value)
        return out

    def finish(self, link: bool = True) -> None:
        """Show what was ignored, write the current values into the URL and offer the link."""
        if self.ignored:
            self.notice.warning("Ignored in this page's link: " + "; ".join(self.ignored) + ". The page shows its "
                                "defaults for those.", icon=":material/link_off:")
        current = self.values()
        if dict(st.query_params.to_dict()) != current:
            st.query_params.from_dict(current)
        st.session_state[self._last_key] = current
        if link:
            with st.expander("Link to this view", icon=":material/link:"):
                st.code(page_link(current), language=None)
                st.caption("Opening the link restores the controls above (the data and generator of the sidebar "
                           "are not part of it).")


def page_link(values: dict[str, str]) -> str:
    """The page's URL with ``values`` as its query string."""
    base = st.context.url or ""
    return base + ("?" + urllib.parse.urlencode(values) if values else "")
