"""Seconds per epoch of Forward-Forward vs backprop, interleaved.

Both models are built and compiled first; then their epochs alternate
(backprop, FF, backprop, FF, ...), so that a machine whose load drifts
slows both alike. Reports the median epoch time of each and their ratio.

    KERAS_LOCAL_DATA_DIR=../shared/data KERAS_BACKEND=jax python benchmarks/forward_forward_speed.py
"""

import argparse
import time

import keras
import numpy as np

from keras_local.datasets import load_mnist
from keras_local.models.forward_forward_model import ForwardForwardModel


def build(rule, hidden, jit_compile):
    blocks = [keras.layers.Dense(units, activation="relu") for units in hidden]
    if rule == "forward_forward":
        model = ForwardForwardModel(blocks, num_classes=10, seed=0)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=jit_compile)
    else:
        model = keras.Sequential([keras.Input((784,))] + blocks + [keras.layers.Dense(10)])
        model.compile(
            optimizer=keras.optimizers.Adam(1e-3), jit_compile=jit_compile,
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train", type=int, default=60000)
    parser.add_argument("--hidden", default="500,500")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jit-compile", default="auto", choices=["auto", "true", "false"])
    args = parser.parse_args(argv)
    jit = {"auto": "auto", "true": True, "false": False}[args.jit_compile]
    hidden = [int(u) for u in args.hidden.split(",")]
    (x, y), _ = load_mnist()
    x = x[: args.train].reshape(-1, 784).astype("float32") / 255
    y = y[: args.train].astype("int32")
    models = {rule: build(rule, hidden, jit) for rule in ("backprop", "forward_forward")}
    for model in models.values():  # compile outside the timed epochs
        model.fit(x[: 2 * args.batch_size], y[: 2 * args.batch_size],
                  batch_size=args.batch_size, epochs=1, verbose=0)
    seconds = {rule: [] for rule in models}
    for _ in range(args.rounds):
        for rule, model in models.items():
            start = time.perf_counter()
            model.fit(x, y, batch_size=args.batch_size, epochs=1, verbose=0)
            seconds[rule].append(time.perf_counter() - start)
    median = {rule: float(np.median(s)) for rule, s in seconds.items()}
    print(f"backend={keras.backend.backend()} train={len(x)} hidden={hidden} "
          f"batch={args.batch_size} jit_compile={args.jit_compile} rounds={args.rounds}")
    for rule, s in seconds.items():
        print(f"{rule}: median {median[rule]:.2f} s/epoch, epochs {[round(v, 2) for v in s]}")
    print(f"FF / backprop: {median['forward_forward'] / median['backprop']:.2f}")


if __name__ == "__main__":
    main()
