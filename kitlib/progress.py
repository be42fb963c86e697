"""Progress bars: one place that decides whether kitlib shows them, and how.

`bar(iterable, progress=True, **tqdm_kwargs)` is `tqdm.auto.tqdm` (a widget in JupyterLab, text in a
terminal), disabled when `progress` is False or when ``$KITLIB_PROGRESS`` is "0": `kitlib reproduce`
sets it for the notebooks it executes, whose saved outputs would otherwise hold every refresh of every bar.

In a notebook a bar with ``leave=False`` leaves nothing behind: tqdm only closes the widget, and the closed
widget's output stays in the cell, so the notebook JupyterLab autosaves holds a stale "0%|  | 0/2" line per
bar. Here the widget is shown under a display id and, when it closes, that display is emptied.
"""
from __future__ import annotations

import os

from tqdm.auto import tqdm
from tqdm.notebook import tqdm_notebook

ENV = "KITLIB_PROGRESS"


def enabled(progress: bool = True) -> bool:
    """True when a bar should be shown: `progress` and not switched off by ``$KITLIB_PROGRESS=0``."""
    return bool(progress) and os.environ.get(ENV, "1").strip() != "0"


if issubclass(tqdm, tqdm_notebook):  # inside a Jupyter kernel with ipywidgets
    from IPython.display import display

    class _Bar(tqdm):
        """A widget bar whose output is emptied when it closes without `leave` (and without an error)."""

        def __init__(self, *args, **kwargs):
            kwargs["display"] = False
            self._handle = None
            super().__init__(*args, **kwargs)
            if not self.disable:
                self._handle = display(self.container, display_id=True)
                self.displayed = True

        def close(self):
            super().close()
            failed = bool(self.total) and self.n < self.total  # tqdm keeps a failed bar, in red
            if self._handle is not None and not self.leave and not failed:
                self._handle.update({}, raw=True)
                self._handle = None
else:
    _Bar = tqdm


def bar(iterable=None, progress: bool = True, **kwargs) -> tqdm:
    """A tqdm bar over `iterable` (kwargs as tqdm: desc, total, ...; `leave` defaults to False), shown when `enabled(progress)`."""
    kwargs.setdefault("leave", False)  # a finished bar leaves nothing behind in a notebook or a terminal
    return _Bar(iterable, disable=not enabled(progress), **kwargs)
