"""Choosing the channel-wise FF settings on a validation split (never the
test set): CIFAR-10, the first `--train` shuffled training images train,
the last `--val` training images validate. After every epoch it prints the
validation accuracy of every predictor at once: the class goodness summed
over all blocks, over all but the first, the top block's alone, and each
block's alone.

    KERAS_BACKEND=jax python benchmarks/forward_forward_channelwise_validation.py --normalization none
    KERAS_BACKEND=jax python benchmarks/forward_forward_channelwise_validation.py --normalization rms
"""

import argparse
import time

import keras
import numpy as np
from keras import ops

from keras_local import ForwardForwardModel
from keras_local.datasets import load_cifar10
from keras_local.rules import forward_forward as ff


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=10000)
    parser.add_argument("--val", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--filters", default="40,80,160,320")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--normalization", choices=["none", "rms"], default="none")
    parser.add_argument("--loss", choices=["competitive", "softplus", "symba"], default="competitive")
    args = parser.parse_args(argv)

    (x, y), _ = load_cifar10(max_test=1)
    x = x.astype("float32") / 255
    y = y.reshape(-1).astype("int32")
    x_train, y_train = x[: args.train], y[: args.train]
    x_val, y_val = x[-args.val:], y[-args.val:]
    mean, std = x_train.mean(axis=(0, 1, 2)), x_train.std(axis=(0, 1, 2))
    x_train, x_val = (x_train - mean) / std, (x_val - mean) / std

    blocks = [keras.Sequential([
        keras.layers.Conv2D(int(f), 3, padding="same"), keras.layers.ReLU(),
        keras.layers.MaxPooling2D(2), keras.layers.BatchNormalization(momentum=0.9),
    ]) for f in args.filters.split(",")]
    model = ForwardForwardModel(blocks, 10, goodness="channelwise", loss=args.loss,
                                normalization=args.normalization, seed=0)
    steps = args.epochs * -(-len(x_train) // 100)
    model.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(args.lr, steps)),
                  metrics=["accuracy"])
    print(vars(args), flush=True)

    def class_goodness_per_block(images):
        parts = []
        for start in range(0, len(images), 500):
            h, per_block = ops.convert_to_tensor(images[start:start + 500]), []
            for block in model.blocks:
                h = block(ff.normalize_length(h, args.normalization), training=False)
                per_block.append(ops.convert_to_numpy(model._class_goodness(h)))
            parts.append(np.stack(per_block))
        return np.concatenate(parts, axis=1)

    for epoch in range(args.epochs):
        start = time.time()
        model.fit(x_train, y_train, batch_size=100, epochs=1, verbose=0)
        seconds = time.time() - start
        g = class_goodness_per_block(x_val)
        accuracy = lambda scores: round(float(np.mean(scores.argmax(1) == y_val)), 4)  # noqa: E731
        print(f"epoch {epoch + 1} ({seconds:.0f} s): all blocks {accuracy(g.sum(0))}, "
              f"all but the first {accuracy(g[1:].sum(0))}, top block {accuracy(g[-1])}, "
              f"each block {[accuracy(b) for b in g]}", flush=True)


if __name__ == "__main__":
    main()
