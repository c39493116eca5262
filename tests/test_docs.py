"""The examples in the public docstrings run and print what they say."""

from __future__ import annotations

import doctest

import pytest

import alscale.cluster_margin
import alscale.hac
import alscale.metrics
import alscale.selection
import alscale.streaming


@pytest.mark.parametrize("module", [alscale.selection, alscale.streaming, alscale.hac, alscale.cluster_margin, alscale.metrics], ids=lambda m: m.__name__)
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0
