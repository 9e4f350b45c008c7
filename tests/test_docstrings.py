"""Every example in the docstrings of models/, pipeline/ and connectors/ runs as written."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import moodshift.connectors
import moodshift.models
import moodshift.pipeline

MODULES = sorted(info.name for package in (moodshift.models, moodshift.pipeline, moodshift.connectors)
                 for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."))


@pytest.mark.parametrize("name", MODULES)
def test_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
