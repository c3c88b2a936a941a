"""Supervised local learning (DGL, InfoPro, AugLocal, MAN) vs backprop:
compiled train-step memory (JAX) and a short CIFAR-10 accuracy run.

    KERAS_BACKEND=jax python benchmarks/local_learning.py memory \
        --blocks-per-stage 5 --batch-size 64
    KERAS_BACKEND=jax python benchmarks/local_learning.py accuracy \
        --train 2000 --test 1000 --epochs 2

Memory is `keras_local.backend.train_step_memory`: XLA temp bytes of
`jax.jit(model.train_step, donate_argnums=0)`, the step Keras's JAX trainer
compiles. For `LocalLossModel` that step trains module by module.
"""

import argparse
import time

import keras
import numpy as np

from keras_local import backend
from keras_local.benchmark.local_loss_rules import resnet
from keras_local.models.local_loss_model import LocalLossModel

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def compile_(model, lr=2e-3):
    model.compile(optimizer=keras.optimizers.Adam(lr), loss=LOSS,
                  metrics=["accuracy"])
    return model


def build(rule, k, args, augment=False):
    net_args = dict(blocks_per_stage=args.blocks_per_stage, augment=augment)
    if rule == "backprop":
        return compile_(resnet((32, 32, 3), 10, **net_args))
    if rule == "backprop_remat":
        # Convolutions, ReLUs and adds rematerialise their activations
        # (mode="full" also wraps BatchNorm and the Functional call, whose
        # Python `training` branch fails under jax.checkpoint in Keras 3.15).
        names = [
            layer.name for layer in resnet((32, 32, 3), 10, **net_args).layers
            if isinstance(layer, (keras.layers.Conv2D, keras.layers.ReLU,
                                  keras.layers.Add))
        ]
        keras.backend.clear_session()
        with keras.RematScope(mode="list_of_layers", layer_names=names):
            net = resnet((32, 32, 3), 10, **net_args)
        return compile_(net)
    net = resnet((32, 32, 3), 10, **net_args)
    legal = LocalLossModel.split_points_of(net)
    if k == "block":
        cuts = [name for name in legal if name.endswith("_out")]
        return compile_(LocalLossModel(net, cuts=cuts, auxiliary=rule, seed=0))
    return compile_(LocalLossModel(net, num_modules=int(k), auxiliary=rule,
                                   seed=0))


def memory(args):
    x = np.zeros((args.batch_size, 32, 32, 3), "float32")
    y = np.zeros((args.batch_size,), "int32")
    rows = []
    base = None
    for rule in args.rules.split(","):
        ks = [None] if rule.startswith("backprop") else args.modules.split(",")
        for k in ks:
            keras.backend.clear_session()
            start = time.time()
            model = build(rule, k, args)
            report = backend.train_step_memory(model, x, y)
            mib = report.bytes / 2**20
            if rule == "backprop":
                base = mib
            ratio = mib / base if base else float("nan")
            modules = getattr(model, "num_modules", 1)
            rows.append((rule, modules, mib, ratio))
            print(f"| {rule} | {modules} | {mib:.1f} | {ratio:.2f} | "
                  f"{time.time() - start:.0f} s compile |", flush=True)
    return rows


def accuracy(args):
    from keras_local.datasets import load_cifar10

    (x, y), (xt, yt) = load_cifar10(max_train=args.train, max_test=args.test)
    x, xt = x.astype("float32") / 255.0, xt.astype("float32") / 255.0
    base_time = None
    for rule in args.rules.split(","):
        keras.backend.clear_session()
        keras.utils.set_random_seed(0)
        model = build(rule, args.accuracy_modules, args, augment=True)
        model.fit(x[:args.batch_size], y[:args.batch_size], epochs=1,
                  batch_size=args.batch_size, verbose=0)  # compile
        start = time.time()
        model.fit(x, y, epochs=args.epochs, batch_size=args.batch_size,
                  verbose=0)
        seconds = (time.time() - start) / args.epochs
        if rule == "backprop":
            base_time = seconds
        _, acc = model.evaluate(xt, yt, verbose=0)
        ratio = seconds / base_time if base_time else float("nan")
        print(f"| {rule} | {getattr(model, 'num_modules', 1)} | {acc:.3f} | "
              f"{seconds:.1f} | {ratio:.2f} |", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("what", choices=["memory", "accuracy"])
    parser.add_argument("--rules",
                        default="backprop,backprop_remat,dgl,infopro,auglocal,man")
    parser.add_argument("--modules", default="4,16",
                        help="K values for memory; 'block' = one per block")
    parser.add_argument("--accuracy-modules", default="4")
    parser.add_argument("--blocks-per-stage", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    if args.what == "memory":
        if backend.BACKEND != "jax":
            raise SystemExit("The memory comparison needs KERAS_BACKEND=jax.")
        memory(args)
    else:
        accuracy(args)


if __name__ == "__main__":
    main()
