"""The one glue helper of the chapters: numbers and texts for the prose, never displayed."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from numbers import Integral, Real
from typing import Any

__all__ = ["and_join", "counted", "glue_key", "glue_value", "glued", "percent", "put", "put_many", "readable", "source_block",
           "type_list"]

_GLUED: dict[str, str | int | float] = {}  # every value put() glued in this kernel, in order


def glue_key(battery: str) -> str:
    """A battery type as a glue-name fragment: ``"NMC2.1" -> "nmc2_1"``, ``"LMO10" -> "lmo10"``."""
    from battgen.data import battery_type

    return battery_type(battery).key.lower().replace(".", "_")


def glue_value(value: Any) -> str | int | float:
    """What :func:`put` glues: a text as ``str``, an integer (Python or numpy) as ``int``, any other
    real number as ``float``, so that ``{glue:text}`` reads back a plain literal."""
    if isinstance(value, str):
        return value
    if isinstance(value, Integral) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, Real) and not isinstance(value, bool):
        return float(value)
    raise TypeError(f"glue a number or a text, not {type(value).__name__}: {value!r}")


def put(name: str, value: Any) -> None:
    """Glue ``value`` (see :func:`glue_value`) as ``name`` for ``{glue:text}`` in the prose, without displaying it."""
    from myst_nb import glue

    _GLUED[name] = glue_value(value)
    glue(name, _GLUED[name], display=False)


def glued() -> dict[str, str | int | float]:
    """Every value :func:`put` glued in this kernel so far (a chapter writes them to its results)."""
    return dict(_GLUED)


def put_many(values: Mapping[str, Any], prefix: str = "") -> None:
    """:func:`put` every item of ``values``, each name preceded by ``prefix``."""
    for name, value in values.items():
        put(prefix + name, value)


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """A count with its noun for the prose: ``counted(1, "seed") == "1 seed"``, ``counted(3, "seed") == "3 seeds"``
    (``plural`` where adding an "s" is wrong)."""
    return f"{int(n)} {noun if int(n) == 1 else plural or noun + 's'}"


def and_join(items: Iterable[Any]) -> str:
    """Items as the prose lists them: ``"a"``, ``"a and b"``, ``"a, b and c"`` (``""`` for none)."""
    words = [str(i) for i in items]
    return ", ".join(words[:-1]) + " and " + words[-1] if len(words) > 1 else "".join(words)


def type_list(batteries: Iterable[str]) -> str:
    """Battery types as the prose lists them: ``type_list(["LMO10", "LFP35"]) == "LMO 10 Ah and LFP 35 Ah"``."""
    from battgen.data import battery_type

    return and_join(battery_type(b).label for b in batteries)


def percent(share: float, digits: int = 0) -> str:
    """A share as the prose writes a percentage, with a space before the sign as in the typed text:
    ``percent(0.953) == "95 %"``, ``percent(0.0123, 1) == "1.2 %"`` (``{:.0%}`` would give ``"95%"``)."""
    return f"{100 * float(share):.{digits}f} %"


def readable(value: float) -> str:
    """A number for the prose in two significant digits; below 0.01 as a power of ten
    (``readable(3.4e-5) == "3.4 × 10⁻⁵"``), never as ``3.4e-05``; 100 and above without decimals."""
    v = float(value)
    if not math.isfinite(v) or v == 0 or abs(v) >= 0.01:
        return f"{v:.2g}" if not math.isfinite(v) or abs(v) < 100 else f"{v:.0f}"
    mantissa, exponent = f"{v:.1e}".split("e")
    return f"{mantissa} × 10" + str(int(exponent)).translate(str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹"))


def source_block(obj: Any, *, dedent: bool = True) -> str:
    """The real source of ``obj`` (via :func:`inspect.getsource`) as a fenced Markdown code block.

    What a chapter shows of battgen is read from the running code, so it cannot drift from it.
    """
    import inspect
    import textwrap
    from pathlib import Path

    src = inspect.getsource(obj)
    src = textwrap.dedent(src) if dedent else src
    module = getattr(obj, "__module__", "")
    name = getattr(obj, "__qualname__", getattr(obj, "__name__", ""))
    try:
        line = inspect.getsourcelines(obj)[1]
        where = f"# {module}.{name}, line {line} of {Path(inspect.getsourcefile(obj)).name}\n"
    except (OSError, TypeError):
        where = f"# {module}.{name}\n"
    return f"```python\n{where}{src.rstrip()}\n```"
