"""Target projection benchmarks: JAX train-step memory, and test accuracy of
DRTP, tpSGD, FA and DFA against backprop on the same network and epochs.

    kl jax python benchmarks/target_projection.py memory
    kl jax python benchmarks/target_projection.py mnist --epochs 10
    kl jax python benchmarks/target_projection.py mnist --validation 10000 \
        --standardize --width 2000 --rules drtp
    kl jax python benchmarks/target_projection.py mnist --standardize \
        --rules backprop,tpsgd --projection-scale 4 --batch 32 --cosine
    kl jax python benchmarks/target_projection.py mnist --standardize \
        --width 2000 --batch 32 --cosine --shift 1 --epochs 20
    kl jax python benchmarks/target_projection.py cifar10 --train 10000
    kl jax python benchmarks/target_projection.py cifar10 --train 25000 \
        --validation 5000 --epochs 3 --conv-targets pooled --kernel-report
    kl jax python benchmarks/target_projection.py rows --cell gru

`mnist`: a Dense MLP on flattened MNIST. `cifar10`: a small CNN
(`Conv2D`-`MaxPooling2D` twice, a `Dense` hidden block, `Dense(10)`).
`rows`: row-by-row MNIST (28 time steps of 28 pixels) through a recurrent
block and `Dense(10)`. Every rule trains the same blocks, from the same
seed (`--seed`, default 0), with the same optimizer, batch size and number
of epochs; the test accuracy after every epoch is printed.
"""

import argparse
import math
import time

import keras
import numpy as np

from keras_local import backend
from keras_local.benchmark.benchmark_spec import BenchmarkSpec
from keras_local.benchmark.registry import get_rule
from keras_local.layers.feedback_alignment import FeedbackAlignment
from keras_local.models.direct_feedback_alignment_model import (
    DirectFeedbackAlignmentModel,
)
from keras_local.models.target_projection_model import TargetProjectionModel

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


# ---------------------------------------------------------------------- #
# Networks: a function returning fresh blocks (the last is the output).
# ---------------------------------------------------------------------- #
def mlp_widths(args):
    """The hidden widths: `--first-width` (or `--width`), then `--width`."""
    return [args.first_width or args.width] + [args.width] * (args.blocks - 1)


def mlp_blocks(args):
    blocks = [keras.layers.Dense(w, activation=args.activation)
              for w in mlp_widths(args)]
    return freeze_leading(blocks + [keras.layers.Dense(10)], args)


def freeze_leading(blocks, args):
    """Diagnostic: the first `--frozen-blocks` weighted blocks stay at their
    random initialisation (random features) for every rule."""
    weighted = [b for b in blocks if not isinstance(
        b, (keras.layers.MaxPooling2D, keras.layers.Flatten))]
    if not 0 <= args.frozen_blocks < len(weighted):
        raise ValueError(
            f"--frozen-blocks must leave the output block trainable. "
            f"Received: {args.frozen_blocks} of {len(weighted)} weighted blocks."
        )
    for block in weighted[:args.frozen_blocks]:
        block.trainable = False
    return blocks


def cnn_blocks(args):
    act = args.activation
    penalty = getattr(args, "orthogonal_penalty", 0.0)
    regularizer = ChannelOrthogonality(penalty) if penalty else None
    return freeze_leading([
        keras.layers.Conv2D(32, 3, padding="same", activation=act,
                            kernel_regularizer=regularizer),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(64, 3, padding="same", activation=act,
                            kernel_regularizer=regularizer),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dense(args.width, activation=act),
        keras.layers.Dense(10),
    ], args)


def rnn_blocks(args):
    cell = {"simple_rnn": keras.layers.SimpleRNN, "gru": keras.layers.GRU,
            "lstm": keras.layers.LSTM}[args.cell]
    return freeze_leading([cell(args.width), keras.layers.Dense(10)], args)


class ChannelOrthogonality(keras.regularizers.Regularizer):
    """Diagnostic penalty keeping a conv layer's output channels diverse:
    `factor` times the mean squared cosine between the kernels of two
    different output channels (each kernel flattened over height, width and
    input channels). Keras's `OrthogonalRegularizer` takes 2D kernels only."""

    def __init__(self, factor):
        self.factor = float(factor)

    def __call__(self, kernel):
        channels = kernel.shape[-1]
        w = keras.ops.reshape(kernel, (-1, channels))
        w = w / (keras.ops.norm(w, axis=0, keepdims=True) + 1e-7)
        cosines = keras.ops.matmul(keras.ops.transpose(w), w)
        off_diagonal = cosines * (1.0 - keras.ops.eye(channels, dtype=cosines.dtype))
        return self.factor * keras.ops.sum(off_diagonal ** 2) / (
            channels * (channels - 1))

    def get_config(self):
        return {"factor": self.factor}


def class_mean_patches(inputs, labels, kernel_size, num_classes=10):
    """`(num_classes, kh * kw * channels)`: the mean `kh x kw` input patch
    of each class under "same" zero padding, flattened in the order of a
    `Conv2D` kernel's first three axes (a class without examples: zeros)."""
    kh, kw = kernel_size
    top, left = (kh - 1) // 2, (kw - 1) // 2
    padded = np.pad(inputs, ((0, 0), (top, kh - 1 - top), (left, kw - 1 - left), (0, 0)))
    height, width = inputs.shape[1:3]
    means = np.zeros((num_classes, kh * kw * inputs.shape[-1]), "float64")
    for k in range(num_classes):
        chosen = padded[labels == k]
        if len(chosen):
            means[k] = np.concatenate([
                chosen[:, dy:dy + height, dx:dx + width].mean(axis=(0, 1, 2))
                for dy in range(kh) for dx in range(kw)])
    return means


def fraction_in_span(vectors, matrix):
    """Share of `matrix`'s squared Frobenius norm (its columns in the space
    of `vectors`' rows) that lies in the span of those rows."""
    _, singular, rows = np.linalg.svd(vectors, full_matrices=False)
    basis = rows[singular > 1e-6 * singular[0]].T
    return float(np.sum((basis.T @ matrix) ** 2) / np.sum(matrix ** 2)), basis.shape[1]


def participation_ratio(matrix):
    """Effective number of directions of `matrix`: `(sum s^2)^2 / sum s^4`
    over its singular values `s` (its rank when they are all equal)."""
    power = np.linalg.svd(matrix, compute_uv=False) ** 2
    return float(power.sum() ** 2 / np.sum(power ** 2))


def report_conv_kernels(blocks, initial_kernels, x, y, rows=5000):
    """Diagnostic (`--kernel-report`): for every `Conv2D`, the share of its
    kernels' change since initialisation that lies in the span of the class
    means of its input patches (computed on the first `rows` training
    images, each layer's input produced by the trained layers below it),
    and the effective number of directions of its kernels."""
    h, labels = x[:rows], y[:rows]
    convs = iter(initial_kernels)
    for block in blocks:
        if isinstance(block, keras.layers.Conv2D):
            kernel = keras.ops.convert_to_numpy(block.kernel).astype("float64")
            size = int(np.prod(kernel.shape[:3]))
            matrix, initial = kernel.reshape(size, -1), next(convs).reshape(size, -1)
            share, span = fraction_in_span(
                class_mean_patches(h, labels, kernel.shape[:2]), matrix - initial)
            print(f"    {block.name}: change in the class-mean span {share:.3f} "
                  f"(chance {span / size:.3f}); effective directions "
                  f"{participation_ratio(initial):.1f} at init, "
                  f"{participation_ratio(matrix):.1f} trained", flush=True)
        if isinstance(block, keras.layers.Flatten):
            break
        h = np.concatenate([keras.ops.convert_to_numpy(block(h[i:i + 500]))
                            for i in range(0, len(h), 500)])


def hold_out(x, y, xt, yt, args):
    """With `--validation N`, the last N training examples replace the test
    set, which is then not read."""
    if not args.validation:
        return x, y, xt, yt
    if not 0 < args.validation < len(x):
        raise ValueError(
            f"--validation must be between 1 and the training size - 1. "
            f"Received: {args.validation} with --train {len(x)}."
        )
    n = args.validation
    return x[:-n], y[:-n], x[-n:], y[-n:]


def build(rule, blocks, input_shape, args, learning_rate):
    if rule == "backprop":
        model = keras.Sequential([keras.Input(input_shape)] + blocks)
    elif rule in ("drtp", "tpsgd"):
        model = TargetProjectionModel(
            blocks, num_classes=10, rule=rule,
            local_loss=args.local_loss if rule == "tpsgd" else None,
            conv_targets=getattr(args, "conv_targets", "feature_map"),
            conv_target_grid=getattr(args, "conv_target_grid", 1),
            projection_initializer=keras.initializers.RandomUniform(
                -args.projection_scale, args.projection_scale),
            seed=args.seed,
        )
    elif rule == "dfa":
        model = DirectFeedbackAlignmentModel(
            blocks, num_classes=10,
            conv_targets=getattr(args, "conv_targets", "feature_map"),
            seed=args.seed,
        )
    elif rule == "fa":
        model = keras.Sequential(
            [keras.Input(input_shape)]
            + [
                FeedbackAlignment(b, seed=args.seed * len(blocks) + i)
                if isinstance(b, (keras.layers.Dense, keras.layers.Conv2D))
                and b.trainable  # a frozen block (--frozen-blocks) needs none
                else b
                for i, b in enumerate(blocks)
            ]
        )
    else:
        raise ValueError(f"Unknown rule. Expected one of {RULES}. Received: {rule!r}")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


class ShiftedImages(keras.utils.PyDataset):
    """Batches of `(N, height, width)` images, each translated by up to
    `shift` pixels on each axis (zero padding, in [0, 1] pixel space), then
    flattened and standardised; the order and the offsets come from a NumPy
    generator seeded with `seed`, so every rule sees the same stream."""

    def __init__(self, images, labels, batch_size, shift, mean, std, seed=0):
        super().__init__()
        self.images, self.labels = images, labels
        self.batch_size, self.shift = batch_size, shift
        self.mean, self.std = mean, std
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(len(images))

    def __len__(self):
        return math.ceil(len(self.images) / self.batch_size)

    def __getitem__(self, index):
        rows = self.order[index * self.batch_size:(index + 1) * self.batch_size]
        images, k = self.images[rows], self.shift
        padded = np.pad(images, ((0, 0), (k, k), (k, k)))
        dx = self.rng.integers(0, 2 * k + 1, len(rows))
        dy = self.rng.integers(0, 2 * k + 1, len(rows))
        height, width = images.shape[1:3]
        images = np.stack([padded[j, dy[j]:dy[j] + height, dx[j]:dx[j] + width]
                           for j in range(len(rows))])
        flat = (images.reshape(len(rows), -1) - self.mean) / self.std
        return flat.astype("float32"), self.labels[rows]

    def on_epoch_end(self):
        self.order = self.rng.permutation(len(self.images))


def compare(args, make_blocks, data, input_shape, make_train_batches=None):
    """Trains every rule of `--rules` on `data`, `((x, y), (xt, yt))`; with
    `make_train_batches`, each rule trains instead on the fresh
    `keras.utils.PyDataset` it returns (the same stream for every rule)."""
    (x, y), (xt, yt) = data
    held_out = "validation" if getattr(args, "validation", 0) else "test"
    print(f"backend={keras.backend.backend()} train={len(x)} {held_out}={len(xt)} "
          f"epochs={args.epochs} batch={args.batch} lr={args.lr} seed={args.seed}"
          f"{' with cosine decay to 0' if args.cosine else ''}")
    base = None
    for rule in args.rules.split(","):
        keras.utils.set_random_seed(args.seed)
        learning_rate = args.lr
        if args.cosine:
            steps = args.epochs * math.ceil(len(x) / args.batch)
            learning_rate = keras.optimizers.schedules.CosineDecay(args.lr, steps)
        blocks = make_blocks(args)
        model = build(rule, blocks, input_shape, args, learning_rate)
        if getattr(args, "kernel_report", False):
            if not model.built:
                model.build((None,) + tuple(input_shape))
            initial_kernels = [
                keras.ops.convert_to_numpy(b.kernel).astype("float64")
                for b in blocks if isinstance(b, keras.layers.Conv2D)]
        start = time.time()
        progress = keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs, rule=rule: print(
                f"  {rule} epoch {epoch + 1}: {held_out} accuracy "
                f"{100 * logs['val_accuracy']:.2f}% "
                f"({time.time() - start:.0f} s)", flush=True,
            )
        )
        inputs = dict(x=make_train_batches()) if make_train_batches else dict(
            x=x, y=y, batch_size=args.batch)
        history = model.fit(
            **inputs, epochs=args.epochs, verbose=0,
            validation_data=(xt, yt), callbacks=[progress],
        ).history
        seconds = (time.time() - start) / args.epochs
        curve = " ".join(f"{100 * a:.2f}" for a in history["val_accuracy"])
        accuracy = history["val_accuracy"][-1]
        base = accuracy if rule == "backprop" else base
        gap = "" if base is None else f" ({100 * (accuracy - base):+.2f} pts)"
        print(f"{rule:>9}: {held_out} accuracy {100 * accuracy:.2f}%{gap}, "
              f"{seconds:.1f} s/epoch; per epoch: {curve}", flush=True)
        if getattr(args, "kernel_report", False):
            report_conv_kernels(blocks, initial_kernels, x, y)
        keras.backend.clear_session()


def load_mnist_scaled(train):
    from keras_local.datasets import load_mnist

    (x, y), (xt, yt) = load_mnist()
    x = x[:train].astype("float32") / 255.0
    xt = xt.astype("float32") / 255.0
    return (x, y[:train].astype("int32")), (xt, yt.astype("int32"))


def mnist(args):
    (x, y), (xt, yt) = load_mnist_scaled(args.train)
    x, y, xt, yt = hold_out(x, y, xt, yt, args)
    images = x
    x, xt = x.reshape(len(x), -1), xt.reshape(len(xt), -1)
    mean, std = np.float32(0.0), np.float32(1.0)
    if args.standardize:
        # One mean and one deviation over the training pixels.
        mean, std = x.mean(), x.std()
        x, xt = (x - mean) / std, (xt - mean) / std
    data = ((x, y), (xt, yt))
    shifted = None
    if args.shift:
        def shifted():
            return ShiftedImages(images, y, args.batch, args.shift, mean, std,
                                 seed=args.seed)
    print(f"MLP 784-{'-'.join(map(str, mlp_widths(args)))}-10, {args.activation}"
          f"{f', {args.frozen_blocks} frozen block(s)' if args.frozen_blocks else ''}"
          f"{', standardised inputs' if args.standardize else ''}"
          f"{f', random shifts of up to {args.shift} px' if args.shift else ''}")
    compare(args, mlp_blocks, data, (784,), make_train_batches=shifted)


def rows(args):
    (x, y), (xt, yt) = load_mnist_scaled(args.train)
    x, y, xt, yt = hold_out(x, y, xt, yt, args)
    data = ((x, y), (xt, yt))
    print(f"row-by-row MNIST: {args.cell}({args.width}) -> Dense(10)")
    compare(args, rnn_blocks, data, (28, 28))


def cifar10(args):
    from keras_local.datasets import load_cifar10

    (x, y), (xt, yt) = load_cifar10(max_train=args.train, max_test=args.test)
    mean = np.array([125.3, 123.0, 113.9], "float32")
    std = np.array([63.0, 62.1, 66.7], "float32")
    x = (x.astype("float32") - mean) / std
    xt = (xt.astype("float32") - mean) / std
    x, y, xt, yt = hold_out(x, y, xt, yt, args)
    print(f"CNN conv32-pool-conv64-pool-{args.width}-10, {args.activation}, "
          f"conv targets: {args.conv_targets}, grid {args.conv_target_grid}"
          + (f", channel orthogonality penalty {args.orthogonal_penalty}"
             if args.orthogonal_penalty else ""))
    data = ((x, y.astype("int32")), (xt, yt.astype("int32")))
    compare(args, cnn_blocks, data, (32, 32, 3))


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("memory")
    m.add_argument("--blocks", type=int, default=8)
    m.add_argument("--width", type=int, default=1024)
    m.add_argument("--batch", type=int, default=4096)
    m.add_argument("--rules", default=",".join(RULES))

    def accuracy_parser(name, width, epochs, activation, rules, train):
        a = sub.add_parser(name)
        a.add_argument("--train", type=int, default=train)
        a.add_argument("--epochs", type=int, default=epochs)
        a.add_argument("--width", type=int, default=width)
        a.add_argument("--batch", type=int, default=100)
        a.add_argument("--lr", type=float, default=1e-3)
        a.add_argument("--cosine", action="store_true",
                       help="decay the learning rate to 0 over the run (cosine)")
        a.add_argument("--activation", default=activation)
        a.add_argument("--local-loss", default="mse")
        a.add_argument("--projection-scale", type=float, default=1.0,
                       help="DRTP/tpSGD targets: projections drawn from "
                            "U(-s, s) (the model's default: s = 1)")
        a.add_argument("--rules", default=rules)
        a.add_argument("--seed", type=int, default=0,
                       help="weights, projections and shifted batches; the same "
                            "for every rule of one run")
        a.add_argument("--validation", type=int, default=0,
                       help="evaluate on the last N training examples, not the test set")
        a.add_argument("--frozen-blocks", type=int, default=0,
                       help="diagnostic: the first N weighted blocks keep their random init")
        return a

    a = accuracy_parser("mnist", 500, 10, "tanh", ",".join(RULES), 60000)
    a.add_argument("--blocks", type=int, default=2)
    a.add_argument("--first-width", type=int, default=0,
                   help="width of the first hidden block (default: --width)")
    a.add_argument("--standardize", action="store_true",
                   help="subtract the training pixels' mean, divide by their std")
    a.add_argument("--shift", type=int, default=0,
                   help="augmentation for every rule: translate each training "
                        "image by up to N pixels per axis, drawn every epoch")
    c = accuracy_parser("cifar10", 256, 5, "tanh", "backprop,tpsgd,drtp", 50000)
    c.add_argument("--test", type=int, default=10000)
    c.add_argument("--conv-targets", default="feature_map")
    c.add_argument("--conv-target-grid", type=int, default=1,
                   help="cells per spatial axis of the pooled target")
    c.add_argument("--orthogonal-penalty", type=float, default=0.0,
                   help="diagnostic, every rule: penalise the squared cosine "
                        "between a conv layer's channel kernels (this factor)")
    c.add_argument("--kernel-report", action="store_true",
                   help="diagnostic: after training, the share of each conv "
                        "kernel's change in the span of its class-mean input "
                        "patches, and its effective number of directions")
    r = accuracy_parser("rows", 128, 3, "tanh", "backprop,tpsgd,drtp", 60000)
    r.add_argument("--cell", default="gru", choices=("simple_rnn", "gru", "lstm"))
    args = parser.parse_args()
    if getattr(args, "projection_scale", 1.0) <= 0:
        parser.error(f"--projection-scale must be > 0. Received: {args.projection_scale}.")
    if getattr(args, "orthogonal_penalty", 0.0) < 0:
        parser.error("--orthogonal-penalty must be >= 0. Received: "
                     f"{args.orthogonal_penalty}.")
    if not 0 <= getattr(args, "shift", 0) < 14:
        parser.error(f"--shift must be between 0 and 13 pixels. Received: {args.shift}.")
    {"memory": memory, "mnist": mnist, "cifar10": cifar10, "rows": rows}[
        args.command
    ](args)


if __name__ == "__main__":
    main()
