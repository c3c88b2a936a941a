"""The foundation's guide and example run end to end in shrunk mode."""

import os
import pathlib
import runpy

import pytest

from tests.conftest import require_data

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCRIPTS = ["guides/writing_a_local_rule.py", "examples/mnist_forward_forward.py"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_runs_in_shrunk_mode(script, monkeypatch):
    require_data("mnist.npz")
    monkeypatch.setenv("KERAS_LOCAL_SHRINK", "1")
    text = (ROOT / script).read_text()
    for field in ("Title:", "Author:", "Date created:", "Last modified:", "Description:"):
        assert field in text.split('"""')[1], f"{script} lacks the tutobook header {field}"
    runpy.run_path(str(ROOT / script), run_name="__main__")
