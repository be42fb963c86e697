"""Progress bars: one place that decides whether kitlib shows them.

`bar(iterable, progress=True, **tqdm_kwargs)` is `tqdm.auto.tqdm` (a widget in JupyterLab, text in a
terminal), disabled when `progress` is False or when ``$KITLIB_PROGRESS`` is "0": `kitlib reproduce`
sets it for the notebooks it executes, whose saved outputs would otherwise hold every refresh of every bar.
"""
from __future__ import annotations

import os

from tqdm.auto import tqdm

ENV = "KITLIB_PROGRESS"


def enabled(progress: bool = True) -> bool:
    """True when a bar should be shown: `progress` and not switched off by ``$KITLIB_PROGRESS=0``."""
    return bool(progress) and os.environ.get(ENV, "1").strip() != "0"


def bar(iterable=None, progress: bool = True, **kwargs) -> tqdm:
    """A tqdm bar over `iterable` (kwargs as tqdm: desc, total, leave, ...), shown when `enabled(progress)`."""
    return tqdm(iterable, disable=not enabled(progress), **kwargs)
