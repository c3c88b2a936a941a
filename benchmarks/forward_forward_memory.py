"""Compiled train-step memory of Forward-Forward vs backprop (JAX).

Usage:
    KERAS_BACKEND=jax python benchmarks/forward_forward_memory.py \
        --blocks 8 --units 1024 --batch-size 4096

Both steps are compiled as Keras's JAX trainer compiles them
(`jax.jit(train_step, donate_argnums=0)`) and measured with XLA's
`memory_analysis().temp_size_in_bytes`. Nothing is trained. Backprop is
the same Dense stack plus a softmax head, trained end to end; it gets the
same batch (FF does not split the batch, so no gradient accumulation is
needed on either side).
"""

import argparse
import json

import keras
import numpy as np

import keras_local
from keras_local import backend


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--blocks", type=int, default=8)
    parser.add_argument("--units", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--input-dim", type=int, default=784)
    parser.add_argument("--num-classes", type=int, default=10)
    args = parser.parse_args()
    if keras.backend.backend() != "jax":
        raise SystemExit("Run with KERAS_BACKEND=jax: the figure is XLA's compiled memory analysis.")
    rng = np.random.default_rng(0)
    x = rng.random((args.batch_size, args.input_dim)).astype("float32")
    y = rng.integers(0, args.num_classes, args.batch_size).astype("int32")
    dense = lambda: [keras.layers.Dense(args.units, activation="relu") for _ in range(args.blocks)]

    bp = keras.Sequential([keras.Input((args.input_dim,))] + dense() + [keras.layers.Dense(args.num_classes)])
    bp.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    results = {"backprop": backend.train_step_memory(bp, x, y).bytes}
    for name, kwargs in [
        ("forward_forward", {}),
        ("forward_forward_hard_negatives", {"negative_labels": "hard"}),
    ]:
        ff = keras_local.ForwardForwardModel(dense(), num_classes=args.num_classes, seed=0, **kwargs)
        ff.compile(optimizer="adam")
        results[name] = backend.train_step_memory(ff, x, y).bytes
    print(json.dumps(vars(args)))
    for name, value in results.items():
        print(f"{name:<34}{value / 2**20:10.1f} MiB   ratio to backprop {value / results['backprop']:.3f}")


if __name__ == "__main__":
    main()
