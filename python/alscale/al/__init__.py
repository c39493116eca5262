"""The active-learning application on top of the alscale library: the loop (`alscale run`),
training, data sets, metrics, reports, the strategies and the benchmark command.

It needs torch, tqdm and matplotlib: ``pip install "alscale[al]"`` (the library itself,
``import alscale``, needs numpy alone).
"""

from __future__ import annotations

import importlib.util

_MISSING = [name for name in ("torch", "tqdm", "matplotlib") if importlib.util.find_spec(name) is None]
if _MISSING:
    raise ImportError(
        f"alscale.al (the active-learning loop, `alscale run`) needs {', '.join(_MISSING)}: "
        'install the application extra with pip install "alscale[al]" (from a source checkout: pip install ".[al]")'
    )
