"""Supervised local learning (DGL, InfoPro, AugLocal, MAN) vs backprop on a
CIFAR ResNet: compiled train-step memory (JAX) and a CIFAR-10 accuracy run.

Memory (compile only, nothing is trained):

    KERAS_BACKEND=jax python benchmarks/local_learning.py memory \\
        --blocks-per-stage 5 --batch-size 128 --modules 4,16

Accuracy (full CIFAR-10, ResNet-32, K=16; runs on keras + jax + numpy +
pillow alone):

    KERAS_BACKEND=jax python benchmarks/local_learning.py accuracy \\
        --train 50000 --test 10000 --blocks-per-stage 5 --modules 16 \\
        --epochs 100 --batch-size 128 --out results.json

Step time (any backend; all models compiled first, rounds interleaved):

    KERAS_BACKEND=jax python benchmarks/local_learning.py speed \\
        --blocks-per-stage 5 --batch-size 128 --modules 4,16

Memory is `keras_local.backend.train_step_memory`: XLA temp bytes of
`jax.jit(model.train_step, donate_argnums=0)`, the step Keras's JAX trainer
compiles. For `LocalLossModel` that step trains module by module.

Accuracy: every rule sees the same data stream (the same seed), the same
standard augmentation (random crop of the 4-pixel zero-padded image and a
random horizontal flip, in NumPy in the input pipeline), per-channel
standardisation, the same optimizer and schedule (SGD, Nesterov momentum
0.9, learning rate 0.1 x batch/128 with cosine decay to 0 over the run,
decoupled weight decay; or `--optimizer adam`), and the same number of
epochs. Test accuracy is measured after every epoch; seconds per epoch
count the training steps only (the first epoch, which compiles, is
reported apart).

`--backup-dir DIR` makes a long accuracy run resumable: each rule backs up
its weights and optimizer state after every epoch
(`keras.callbacks.BackupAndRestore`) with its per-epoch history, and the
same command run again goes on from the last epoch backed up, with the
same data stream (the rows record the epochs it resumed at).
"""

import argparse
import importlib.metadata
import json
import os
import platform
import time

import keras
import numpy as np

from keras_local import backend
from keras_local.benchmark.local_loss_rules import infopro_cuts
from keras_local.callbacks import EpochTimer
from keras_local.benchmark.local_loss_rules import resnet
from keras_local.models.checkpointed_backprop_model import (
    CheckpointedBackpropModel,
)
from keras_local.models.local_loss_model import LocalLossModel

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
LOCAL_RULES = ("dgl", "infopro", "auglocal", "man", "man_infopro")
# CIFAR-10 per-channel mean and standard deviation (of the 0-1 images).
MEAN = np.array([0.4914, 0.4822, 0.4465], "float32")
STD = np.array([0.2470, 0.2435, 0.2616], "float32")
# InfoPro's ResNet-32 CIFAR-10 loss weights by K, from its reference code's
# commands: ((lambda_1, lambda_2) of the first module, of the last one with
# an auxiliary network). Its classification term there is a supervised
# contrastive loss; here it is the cross-entropy of its 1c2f head.
INFOPRO_LAMBDAS = {
    2: ((5.0, 1.0), (0.0, 0.0)),
    4: ((6.0, 0.0), (1.0, 2.0)),
    8: ((5.0, 0.0), (0.0, 2.0)),
    16: ((5.0, 0.05), (0.2, 0.5)),
}


def network(rule, args, remat=False):
    return resnet((32, 32, 3), 10, blocks_per_stage=args.blocks_per_stage,
                  remat=remat)


def make_model(rule, k, args):
    """The model of `rule` (uncompiled); `k` modules for local rules."""
    if rule == "backprop":
        return network(rule, args)
    if rule == "backprop_remat":
        return network(rule, args, remat=True)
    # `<local rule>_remat`: the rule with `remat=True` (each module
    # recomputed for its backward pass, as the checkpointed baseline does).
    remat = rule.endswith("_remat") and rule[: -len("_remat")] in LOCAL_RULES
    if remat:
        rule = rule[: -len("_remat")]
    if rule not in LOCAL_RULES + ("backprop_checkpointed",):
        raise ValueError(
            f"Unknown rule. Expected one of backprop, backprop_remat, "
            f"backprop_checkpointed, {', '.join(LOCAL_RULES)} (each also "
            f"with the suffix _remat). Received: {rule!r}"
        )
    net = network(rule, args)
    k = int(k)
    cuts = args.cuts.split(",") if args.cuts else infopro_cuts(args.blocks_per_stage, k)
    if cuts is None:
        legal = len(LocalLossModel.split_points_of(net))
        split = {"num_modules": min(k, legal + 1)}
    else:
        split = {"cuts": cuts}
    if rule == "backprop_checkpointed":
        # Backprop with gradient checkpointing at the same module
        # boundaries as the local rules: their fair memory baseline.
        return CheckpointedBackpropModel(net, seed=0, **split)
    head = {}
    if rule == "man_infopro":
        # MAN with InfoPro's classifier and decoder (the MAN paper's
        # InfoPro+MAN).
        rule, head = "man", {"man_head": "infopro"}
    if head or rule == "infopro":
        # The reference decoder: sigmoid + binary cross-entropy against the
        # image before standardisation.
        split.update(
            infopro_lambdas=INFOPRO_LAMBDAS.get(
                len(cuts) + 1 if cuts else split["num_modules"], (1.0, 1.0)
            ),
            infopro_reconstruction="binary_crossentropy",
            infopro_input_mean=MEAN.tolist(),
            infopro_input_std=STD.tolist(),
        )
    return LocalLossModel(net, auxiliary=rule, remat=remat, seed=0, **split,
                          **head)


# ---------------------------------------------------------------------- #
# Memory.
# ---------------------------------------------------------------------- #
def memory(args):
    x = np.zeros((args.batch_size, 32, 32, 3), "float32")
    y = np.zeros((args.batch_size,), "int32")
    rows = []
    base = None
    print("| rule | modules | temp MiB | vs backprop | compile |")
    print("|---|---|---|---|---|")
    for rule in args.rules.split(","):
        ks = ([None] if rule in ("backprop", "backprop_remat")
              else args.modules.split(","))
        for k in ks:
            keras.backend.clear_session()
            start = time.time()
            model = make_model(rule, k, args)
            model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
                          loss=LOSS, metrics=["accuracy"])
            report = backend.train_step_memory(model, x, y)
            mib = report.bytes / 2**20
            if rule == "backprop":
                base = mib
            ratio = mib / base if base else float("nan")
            modules = getattr(model, "num_modules", 1)
            rows.append({"rule": rule, "modules": modules, "temp_mib": mib,
                         "ratio": ratio})
            print(f"| {rule} | {modules} | {mib:.1f} | {ratio:.2f} | "
                  f"{time.time() - start:.0f} s |", flush=True)
    if args.out:
        _write(args.out, {"what": "memory", "config": vars(args),
                          "environment": _environment(), "rows": rows})
    return rows


# ---------------------------------------------------------------------- #
# Step time.
# ---------------------------------------------------------------------- #
def speed(args):
    """Seconds per train step of every rule on the same batch. All models
    are compiled first; then rounds of `--steps` steps alternate between
    them, so a drifting machine load slows every rule alike."""
    rng = np.random.default_rng(args.seed)
    x = rng.normal(size=(args.batch_size, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, size=(args.batch_size,)).astype("int32")
    models = {}
    for rule in args.rules.split(","):
        ks = ([None] if rule in ("backprop", "backprop_remat")
              else args.modules.split(","))
        for k in ks:
            keras.utils.set_random_seed(args.seed)
            model = make_model(rule, k, args)
            model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                          loss=LOSS)
            model.train_on_batch(x, y)  # compiles
            models[(rule, getattr(model, "num_modules", 1))] = model
    seconds = {key: [] for key in models}
    for _ in range(args.rounds):
        for key, model in models.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                logs = model.train_on_batch(x, y, return_dict=True)
            float(logs["loss"])  # waits for the device
            seconds[key].append((time.perf_counter() - start) / args.steps)
    base = float(np.median(seconds[("backprop", 1)])) if (
        ("backprop", 1) in seconds) else None
    rows = []
    print(f"backend={keras.backend.backend()} batch={args.batch_size} "
          f"blocks_per_stage={args.blocks_per_stage} steps={args.steps} "
          f"rounds={args.rounds}")
    print("| rule | modules | s/step (median) | vs backprop |")
    print("|---|---|---|---|")
    for (rule, k), s in seconds.items():
        median = float(np.median(s))
        ratio = median / base if base else float("nan")
        rows.append({"rule": rule, "modules": k, "seconds_per_step": median,
                     "all": s, "ratio": ratio})
        print(f"| {rule} | {k} | {median:.3f} | {ratio:.2f} |", flush=True)
    if args.out:
        _write(args.out, {"what": "speed", "config": vars(args),
                          "environment": _environment(), "rows": rows})
    return rows


# ---------------------------------------------------------------------- #
# Accuracy.
# ---------------------------------------------------------------------- #
class AugmentedBatches(keras.utils.PyDataset):
    """Standardised CIFAR batches with the standard augmentation: a random
    crop of the image zero-padded by `pad` pixels, a random horizontal
    flip. The stream depends on `seed` only, so every rule sees the same
    images in the same order with the same crops."""

    def __init__(self, x, y, batch_size, seed, pad=4, **kwargs):
        super().__init__(**kwargs)
        self.x, self.y = x, y
        self.batch_size, self.pad = batch_size, pad
        self.rng = np.random.default_rng(seed)
        self.on_epoch_end()

    def __len__(self):
        return len(self.x) // self.batch_size  # drop the last partial batch

    def on_epoch_end(self):
        n = len(self.x)
        self.order = self.rng.permutation(n)
        self.shifts = self.rng.integers(0, 2 * self.pad + 1, size=(n, 2))
        self.flips = self.rng.random(n) < 0.5

    def __getitem__(self, i):
        idx = self.order[i * self.batch_size:(i + 1) * self.batch_size]
        p = self.pad
        padded = np.pad(self.x[idx], ((0, 0), (p, p), (p, p), (0, 0)))
        size = self.x.shape[1]
        rows = self.shifts[idx, 0][:, None] + np.arange(size)[None, :]
        cols = self.shifts[idx, 1][:, None] + np.arange(size)[None, :]
        batch = padded[np.arange(len(idx))[:, None, None], rows[:, :, None],
                       cols[:, None, :]]
        flip = self.flips[idx]
        batch[flip] = batch[flip, :, ::-1]
        return batch, self.y[idx]


class EpochClock(EpochTimer):
    """Seconds of each epoch's training steps (`EpochTimer`) and test
    accuracy after each epoch. With `history_path` both lists are written
    there after every epoch and read back when the run resumes (see
    `--backup-dir`)."""

    def __init__(self, x_test, y_test, batch_size, history_path=None):
        super().__init__()
        self.x_test, self.y_test = x_test, y_test
        self.batch_size = batch_size
        self.history_path = history_path
        self.test_accuracy, self.train_seconds, self.resumed_at = [], [], []
        if history_path and os.path.exists(history_path):
            with open(history_path) as f:
                history = json.load(f)
            self.test_accuracy = history["test_accuracy"]
            self.train_seconds = history["train_seconds"]
            self.resumed_at = history["resumed_at"]

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._first_epoch = True

    def on_epoch_begin(self, epoch, logs=None):
        if self._first_epoch:
            # `fit` starts at the backup's epoch: anything recorded after
            # it (an epoch evaluated but not backed up) is trained again.
            del self.test_accuracy[epoch:], self.train_seconds[epoch:]
            if epoch:
                self.resumed_at.append(epoch)
            self._first_epoch = False
        super().on_epoch_begin(epoch, logs)

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        _, acc = self.model.evaluate(self.x_test, self.y_test,
                                     batch_size=self.batch_size, verbose=0)
        self.test_accuracy.append(float(acc))
        self.train_seconds.append(self.seconds[-1])
        if self.history_path:
            _write(self.history_path, {"test_accuracy": self.test_accuracy,
                                       "train_seconds": self.train_seconds,
                                       "resumed_at": self.resumed_at})
        print(f"  epoch {epoch + 1}: {self.train_seconds[-1]:.1f} s, "
              f"test accuracy {acc:.4f}", flush=True)


def _optimizer(args, steps):
    lr = args.learning_rate
    if args.optimizer == "adam":
        schedule = keras.optimizers.schedules.CosineDecay(lr or 1e-3, steps)
        return keras.optimizers.Adam(schedule)
    lr = lr or 0.1 * args.batch_size / 128
    schedule = keras.optimizers.schedules.CosineDecay(lr, steps)
    return keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True,
                                weight_decay=args.weight_decay)


def _resume(model, data, folder, input_shape):
    """Callbacks that back the run up to `folder` after every epoch and, if
    a backup is there, restore the weights and optimizer state from it and
    move `data` on to the epoch where it stopped, so the resumed run sees
    the batches and crops the uninterrupted one would have."""
    model.build((None,) + tuple(input_shape))
    metadata = os.path.join(folder, "training_metadata.json")
    if os.path.exists(metadata):
        with open(metadata) as f:
            for _ in range(json.load(f)["epoch"]):
                data.on_epoch_end()
    return [keras.callbacks.BackupAndRestore(folder, delete_checkpoint=False)]


def _standardise(images):
    return ((images.astype("float32") / 255.0) - MEAN) / STD


def accuracy(args):
    from keras_local.datasets import load_cifar10

    (x, y), (xt, yt) = load_cifar10(max_train=args.train, max_test=args.test)
    x, xt = _standardise(x), _standardise(xt)
    y, yt = y.astype("int32"), yt.astype("int32")
    steps_per_epoch = len(x) // args.batch_size
    results = []
    base_seconds = None
    print("| rule | modules | final test acc | best test acc | s/epoch "
          "(after the first) | first epoch s | step time vs backprop |")
    print("|---|---|---|---|---|---|---|")
    for rule in args.rules.split(","):
        ks = ([None] if rule in ("backprop", "backprop_remat")
              else args.modules.split(","))
        for k in ks:
            keras.backend.clear_session()
            keras.utils.set_random_seed(args.seed)
            model = make_model(rule, k, args)
            model.compile(optimizer=_optimizer(args, steps_per_epoch
                                               * args.epochs),
                          loss=LOSS, metrics=["accuracy"])
            data = AugmentedBatches(x, y, args.batch_size, seed=args.seed)
            callbacks, history_path = [], None
            if args.backup_dir:
                folder = os.path.join(args.backup_dir, f"{rule}_k{k or 1}")
                history_path = os.path.join(folder, "history.json")
                callbacks = _resume(model, data, folder, x.shape[1:])
            clock = EpochClock(xt, yt, args.batch_size, history_path)
            print(f"{rule} (K={k or 1}):", flush=True)
            # The clock first: it records an epoch before the backup does.
            # `shuffle=False`: `data` shuffles itself from its own seed;
            # Keras's shuffle of the batch order draws from the global
            # NumPy state, which a resumed process cannot replay.
            model.fit(data, epochs=args.epochs, callbacks=[clock] + callbacks,
                      shuffle=False, verbose=0)
            later = clock.train_seconds[1:] or clock.train_seconds
            seconds = float(np.median(later))
            if rule == "backprop":
                base_seconds = seconds
            ratio = seconds / base_seconds if base_seconds else None
            row = {
                "rule": rule,
                "modules": getattr(model, "num_modules", 1),
                "cuts": getattr(model, "cuts", None),
                "test_accuracy_per_epoch": clock.test_accuracy,
                "train_seconds_per_epoch": clock.train_seconds,
                "resumed_at_epochs": clock.resumed_at,
                "seconds_per_epoch": seconds,
                "first_epoch_seconds": clock.train_seconds[0],
                "step_time_vs_backprop": ratio,
                "final_test_accuracy": clock.test_accuracy[-1],
                "best_test_accuracy": max(clock.test_accuracy),
                "parameters": int(sum(
                    np.prod(v.shape) for v in model.trainable_variables
                )),
            }
            results.append(row)
            if args.out:  # after every rule, so a cut run keeps its rows
                _write(args.out, {"what": "accuracy", "config": vars(args),
                                  "environment": _environment(),
                                  "results": results})
    print()
    print("| rule | modules | final test acc | best test acc | s/epoch "
          "(after the first) | first epoch s | step time vs backprop |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        ratio = r["step_time_vs_backprop"]
        ratio = "n/a" if ratio is None else f"{ratio:.2f}"
        print(f"| {r['rule']} | {r['modules']} | "
              f"{r['final_test_accuracy']:.4f} | {r['best_test_accuracy']:.4f}"
              f" | {r['seconds_per_epoch']:.1f} | "
              f"{r['first_epoch_seconds']:.1f} | {ratio} |", flush=True)
    return results


def _environment():
    env = {"backend": keras.backend.backend(), "keras": keras.__version__,
           "python": platform.python_version(), "machine": platform.node()}
    try:
        env[keras.backend.backend()] = importlib.metadata.version(
            "tensorflow" if keras.backend.backend() == "tensorflow"
            else keras.backend.backend()
        )
        env["devices"] = keras.distribution.list_devices()
    except Exception as error:  # noqa: BLE001 (informational only)
        env["devices"] = f"unknown ({error})"
    return env


def _write(path, payload):
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with open(path, "w") as f:
        json.dump(payload, f, indent=1)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("what", choices=["memory", "accuracy", "speed"])
    parser.add_argument(
        "--rules", default=None,
        help="comma-separated; memory default: backprop,backprop_remat,"
             "backprop_checkpointed,dgl,infopro,auglocal,man; accuracy default: backprop,dgl,infopro,"
             "auglocal,man")
    parser.add_argument("--modules", default=None,
                        help="comma-separated K values for the local rules "
                             "(memory default 4,16; accuracy default 16)")
    parser.add_argument("--cuts", default=None,
                        help="comma-separated cut layer names (e.g. "
                             "stem_out,s0b0_out,s1b0_out); overrides the split "
                             "that --modules picks")
    parser.add_argument("--blocks-per-stage", type=int, default=5,
                        help="5 = ResNet-32, 18 = ResNet-110")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--train", type=int, default=50000)
    parser.add_argument("--test", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd")
    parser.add_argument("--learning-rate", type=float, default=None,
                        help="SGD default 0.1 x batch/128, Adam 1e-3")
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=5,
                        help="speed: steps per timed round")
    parser.add_argument("--rounds", type=int, default=3,
                        help="speed: timed rounds per rule")
    parser.add_argument("--out", default=None, help="JSON file of results")
    parser.add_argument("--backup-dir", default=None,
                        help="accuracy: back each run up here after every "
                             "epoch and resume from it when run again")
    args = parser.parse_args(argv)
    if args.rules is None:
        args.rules = ("backprop,backprop_remat,backprop_checkpointed,dgl,"
                      "infopro,auglocal,man"
                      if args.what == "memory"
                      else "backprop,backprop_checkpointed,dgl,infopro,"
                      "auglocal,man" if args.what == "speed"
                      else "backprop,dgl,infopro,auglocal,man")
    if args.modules is None:
        args.modules = "16" if args.what == "accuracy" else "4,16"
    if args.what == "speed":
        return speed(args)
    if args.what == "memory":
        if backend.BACKEND != "jax":
            raise SystemExit("The memory comparison needs KERAS_BACKEND=jax.")
        return memory(args)
    return accuracy(args)


if __name__ == "__main__":
    main()
