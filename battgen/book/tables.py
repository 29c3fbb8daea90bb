"""The one table helper of the chapters: rounded, labelled, never cut off at the page's edge."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from battgen.book.glue import percent

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Table", "table"]


class Table:
    """A data frame shown as a styled HTML table inside a horizontally scrolling box (``battgen-table``).

    The caption says what the table holds; numbers are rounded to ``digits`` decimals (``formats``
    maps a column to a format string or a function instead; a percentage format such as
    ``"{:.1%}"`` is written as the prose writes it, ``"95.1 %"``); ``index=False`` hides the row labels.
    In a terminal (``repr``) it prints as plain text with the caption on top.
    """

    def __init__(self, frame: pd.DataFrame, caption: str, digits: int = 2,
                 formats: Mapping[Any, Any] | None = None, index: bool = False) -> None:
        self.frame, self.caption, self.digits, self.formats, self.index = frame, caption, digits, dict(formats or {}), index

    def styler(self):
        """The pandas ``Styler`` behind the HTML (deterministic ids, so that re-executions give the same page)."""
        import pandas as pd

        # one format call: columns without an entry in ``formats`` get ``digits`` decimals
        formats = {column: _spaced_percent(f) for column, f in self.formats.items()}
        styler = self.frame.style.format(formats or None, precision=self.digits, thousands=",", na_rep="-")
        if not self.index:
            styler = styler.hide(axis="index")
        long_text = [c for c in self.frame.columns if not pd.api.types.is_numeric_dtype(self.frame[c])
                     and self.frame[c].astype(str).str.len().max() > 40]
        if long_text:  # prose columns wrap (cells stay on one line otherwise, and the box scrolls)
            styler = styler.set_properties(subset=long_text, **{"white-space": "normal", "min-width": "22em"})
        key = hashlib.sha1(f"{self.caption}|{list(self.frame.columns)}|{self.frame.shape}".encode()).hexdigest()[:10]
        return styler.set_caption(self.caption).set_uuid(key)

    def _repr_html_(self) -> str:
        return f'<div class="battgen-table">{self.styler().to_html()}</div>'

    def __repr__(self) -> str:
        shown = self.frame.round(self.digits)
        return f"{self.caption}\n{shown.to_string(index=self.index)}"


def _spaced_percent(fmt: Any) -> Any:
    """``"{:.1%}"`` as a function writing ``"95.1 %"`` (:func:`battgen.book.glue.percent`); any other format as it is."""
    match = re.fullmatch(r"\{:\.(\d+)%\}", fmt) if isinstance(fmt, str) else None
    if match is None:
        return fmt
    digits = int(match.group(1))
    return lambda value: percent(value, digits)


def table(frame: pd.DataFrame, caption: str, *, digits: int = 2, formats: Mapping[Any, Any] | None = None,
          index: bool = False) -> Table:
    """Show ``frame`` as a :class:`Table`: the last expression of a chapter cell."""
    return Table(frame, caption, digits, formats, index)
