"""The benchmark harness's memory figures: a child's own high-water mark, not its parent's."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from alscale.al.harness import watch_peak_rss

MIB = 2**20


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_watch_peak_rss_is_the_childs_own_high_water_mark():
    """A parent holding 300 MB starts a child that takes 80 MB: the watch gives the child's peak
    (its interpreter, numpy and the 80 MB), never the parent's 300 MB that wait4's ru_maxrss can
    carry over the fork and exec."""
    held = np.ones(300 * MIB // 8)  # the parent's resident set, touched
    code = "import time, numpy as np; a = np.ones(80 * 2**20 // 8); time.sleep(0.8)"
    proc = subprocess.Popen([sys.executable, "-c", code])
    done = watch_peak_rss(proc.pid, interval=0.02)
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # exited, not yet reaped
    peak = done()
    assert proc.wait() == 0
    assert peak is not None and 80 * MIB <= peak < 250 * MIB, peak / MIB
    assert held.sum() == held.size

