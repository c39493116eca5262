"""Moved: the strategies are :mod:`alscale.strategies` (numpy only, shared by the loop, ``alscale
query`` and :class:`alscale.ActiveLearner`). This name stays for one minor version."""

import sys
import warnings

from .. import strategies as _strategies

warnings.warn("alscale.al.strategies moved to alscale.strategies; the old name will be removed in alscale 0.3",
              DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _strategies
