"""Shared fixtures. The suite runs once per backend: KERAS_BACKEND is set for
the whole process (see the Makefile / .ci/run)."""

import os
import subprocess
import sys
import warnings

# JAX 0.10 on CPU spends 2-7 s compiling the random-number program of each
# new weight shape with partitionable threefry (its default); the classic
# threefry compiles in about 0.5 s. Tests only need some random stream, so
# the suite takes the faster one (it halves, e.g., the locality tests).
os.environ.setdefault("JAX_THREEFRY_PARTITIONABLE", "false")
# TensorFlow's oneDNN CPU kernels vary run to run (the same Forward-Forward
# fit read 4.716717 or 4.716568 or 4.716352 across 12 runs; with oneDNN off,
# 40 of 40 runs were bitwise equal). Tests that compare two trainings need
# the deterministic kernels.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from keras_local.datasets import data_path  # noqa: E402

BACKEND = keras.backend.backend()
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UNDER_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
DEFAULT_DATA_DIR = os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")
)
if not os.environ.get(data_path.ENVIRONMENT_VARIABLE) and os.path.isdir(DEFAULT_DATA_DIR):
    os.environ[data_path.ENVIRONMENT_VARIABLE] = DEFAULT_DATA_DIR


def to_numpy(tensor):
    """A backend tensor (or anything `keras.ops` takes) as a NumPy array."""
    return keras.ops.convert_to_numpy(tensor)


def require_data(filename):
    """Path of a real data file; skips (fails under CI) when it is missing."""
    try:
        return data_path.find_data_file(filename)
    except FileNotFoundError as missing:
        if UNDER_CI:
            pytest.fail(f"CI must have real data: {missing}")
        pytest.skip(f"real data not available here: {missing}")


def require_module(name, reason):
    """Imports an optional package; skips (fails under CI) when missing."""
    try:
        return __import__(name)
    except ImportError as missing:
        if UNDER_CI:
            pytest.fail(f"CI must have {name} ({reason}): {missing}")
        pytest.skip(f"{name} is not installed: {reason}")


def run_python(script, *args, env=None, timeout=600):
    """Runs `script` in a fresh Python process at the repository root (for
    what must precede the backend's start: device settings, affinity) and
    returns its stdout; fails the test if the process fails."""
    env = dict(os.environ if env is None else env)
    for attempt in range(3):
        done = subprocess.run(
            [sys.executable, "-c", script, *args], capture_output=True,
            text=True, env=env, timeout=timeout, cwd=ROOT,
        )
        if done.returncode >= 0:
            break
        # Killed by a signal, not failed: TensorFlow's runtime segfaulted
        # once at start-up in a CI run on a loaded 2-core machine (0 of 10
        # reruns). Start again, and say so.
        warnings.warn(
            f"the test's subprocess died of signal {-done.returncode} "
            f"(attempt {attempt + 1}); restarting it. stderr: {done.stderr[-500:]}"
        )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _clear_session():
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    yield
