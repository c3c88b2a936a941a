"""Every `Example:` in the package's docstrings runs as written.

Examples assume `import numpy as np`, `import keras` and `import
keras_local` (the convention of Keras's own docstrings); anything else they
import or build themselves, real data included (through the package's
loaders). To keep the suite short, `fit`, `evaluate` and `predict` see at
most the first 256 examples of each array and `fit` runs one epoch; the
rest of each example is executed unchanged.
"""

import functools
import importlib
import pkgutil
import re
import textwrap

import keras
import numpy as np
import pytest

import keras_local
from tests.conftest import require_data

MAX_EXAMPLES = 256
DATA_FILES = {
    "load_mnist": "mnist.npz",
    "load_cifar10": "cifar10_jpeg.npz",
    "load_cora": "cora_planetoid.npz",
    "load_citeseer": "citeseer_planetoid.npz",
    "load_amazon_photo": "amazon_photo.npz",
    "load_amazon_computers": "amazon_computers.npz",
    "load_coauthor_cs": "coauthor_cs.npz",
    "load_sst2": "sst2_sentences.npz",
    "load_trec6": "trec6.npz",
}


def _collect():
    examples = []
    # Only the active backend's implementation is imported, as keras_local
    # itself does; its public functions carry the examples.
    other_backends = tuple(
        f"keras_local.backend.{name}"
        for name in ("jax", "tensorflow", "torch")
        if name != keras.backend.backend()
    )
    for info in pkgutil.walk_packages(keras_local.__path__, "keras_local."):
        if info.name.endswith("__main__") or info.name.startswith(other_backends):
            continue
        module = importlib.import_module(info.name)
        owners = [(info.name, module)] + [
            (f"{info.name}.{name}", obj)
            for name, obj in vars(module).items()
            if getattr(obj, "__module__", None) == info.name
            and callable(obj)
        ]
        for qualname, obj in owners:
            blocks = re.findall(r"```python\n(.*?)```", obj.__doc__ or "", re.S)
            for index, block in enumerate(blocks):
                examples.append(
                    pytest.param(textwrap.dedent(block), id=f"{qualname}[{index}]")
                )
    return examples


EXAMPLES = _collect()


def _head(value):
    if isinstance(value, np.ndarray) and value.ndim and len(value) > MAX_EXAMPLES:
        return value[:MAX_EXAMPLES]
    return value


def _shrunk(method, epochs_to_one):
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        args = keras.tree.map_structure(_head, list(args))
        kwargs = {
            key: keras.tree.map_structure(_head, value)
            if key in ("x", "y", "sample_weight", "validation_data")
            else value
            for key, value in kwargs.items()
        }
        if epochs_to_one:
            kwargs["epochs"] = 1
        return method(self, *args, **kwargs)

    return wrapper


def test_examples_were_found():
    # One per documented public class or function at least; a broken
    # collector would otherwise pass the suite with nothing run.
    assert len(EXAMPLES) >= 45  # 49 when written (48 off JAX)


@pytest.mark.parametrize("code", EXAMPLES)
def test_docstring_example_runs(code, monkeypatch):
    for loader, filename in DATA_FILES.items():
        if loader + "(" in code:
            require_data(filename)
    monkeypatch.setattr(keras.Model, "fit", _shrunk(keras.Model.fit, True))
    monkeypatch.setattr(keras.Model, "evaluate", _shrunk(keras.Model.evaluate, False))
    monkeypatch.setattr(keras.Model, "predict", _shrunk(keras.Model.predict, False))
    namespace = {"np": np, "keras": keras, "keras_local": keras_local}
    exec(compile(code, "<docstring example>", "exec"), namespace)
