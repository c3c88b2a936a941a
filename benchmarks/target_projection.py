"""Target projection benchmarks: JAX train-step memory and MNIST accuracy.

    kl jax python benchmarks/target_projection.py memory
    kl jax python benchmarks/target_projection.py mnist --epochs 5
"""

import argparse
import time

import keras
import numpy as np

from keras_local import backend
from keras_local.benchmark.benchmark_spec import BenchmarkSpec
from keras_local.benchmark.registry import get_rule

RULES = ("backprop", "drtp", "tpsgd", "fa", "dfa")


def memory(args):
    spec = BenchmarkSpec(
        dataset="synthetic", input_shape=(args.width,), num_classes=10,
        hidden_units=(args.width,) * args.blocks, jit_compile=True,
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.batch, args.width)).astype("float32")
    y = rng.integers(0, 10, size=args.batch).astype("int32")
    print(f"backend={keras.backend.backend()} blocks={args.blocks} "
          f"width={args.width} batch={args.batch}")
    base = None
    for name in args.rules.split(","):
        model = get_rule(name)(spec)
        report = backend.train_step_memory(model, x, y)
        base = report.bytes if name == "backprop" else base
        ratio = "" if base is None else f" ({report.bytes / base:.3f}x backprop)"
        print(f"{name:>9}: {report.bytes / 2**20:9.1f} MiB{ratio}")
        keras.backend.clear_session()


def mnist(args):
    from keras_local.datasets import load_mnist

    (x, y), (xt, yt) = load_mnist()
    x = x[: args.train].reshape(-1, 784).astype("float32") / 255.0
    xt = xt.reshape(-1, 784).astype("float32") / 255.0
    y = y[: args.train]
    spec = BenchmarkSpec(
        dataset="mnist", input_shape=(784,), num_classes=10,
        hidden_units=(args.width,) * args.blocks, learning_rate=args.lr,
    )
    print(f"backend={keras.backend.backend()} train={len(x)} "
          f"epochs={args.epochs} hidden={spec.hidden_units}")
    base = None
    for name in args.rules.split(","):
        keras.utils.set_random_seed(0)
        model = get_rule(name)(spec)
        start = time.time()
        model.fit(x, y, batch_size=args.batch, epochs=args.epochs, verbose=0)
        seconds = (time.time() - start) / args.epochs
        accuracy = model.evaluate(xt, yt, verbose=0, batch_size=1000)[1]
        base = accuracy if name == "backprop" else base
        gap = "" if base is None else f" ({100 * (accuracy - base):+.2f} pts)"
        print(f"{name:>9}: test accuracy {100 * accuracy:.2f}%{gap}, "
              f"{seconds:.1f} s/epoch")
        keras.backend.clear_session()


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("memory")
    m.add_argument("--blocks", type=int, default=8)
    m.add_argument("--width", type=int, default=1024)
    m.add_argument("--batch", type=int, default=4096)
    m.add_argument("--rules", default=",".join(RULES))
    a = sub.add_parser("mnist")
    a.add_argument("--train", type=int, default=60000)
    a.add_argument("--epochs", type=int, default=5)
    a.add_argument("--blocks", type=int, default=2)
    a.add_argument("--width", type=int, default=500)
    a.add_argument("--batch", type=int, default=100)
    a.add_argument("--lr", type=float, default=1e-3)
    a.add_argument("--rules", default=",".join(RULES))
    args = parser.parse_args()
    memory(args) if args.command == "memory" else mnist(args)


if __name__ == "__main__":
    main()
