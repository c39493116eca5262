"""The examples in the public docstrings run and print what they say."""

from __future__ import annotations

import doctest

import pytest

import alscale.cluster_margin
import alscale.al.datasets
import alscale.distributed
import alscale.diversity
import alscale.hac
import alscale.al.loop
import alscale.al.metrics
import alscale.pool
import alscale.selection
import alscale.al.strategies
import alscale.streaming
import alscale.al.train

MODULES = [alscale.selection, alscale.streaming, alscale.hac, alscale.cluster_margin, alscale.diversity,
           alscale.al.strategies, alscale.al.metrics, alscale.al.datasets, alscale.al.train, alscale.al.loop,
           alscale.pool, alscale.distributed]


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
