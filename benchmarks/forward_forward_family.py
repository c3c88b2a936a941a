"""Forward-Forward family benchmark (issue 5), one command per experiment.

Experiments (each one trains every rule for the same number of epochs):

- `physical`: MNIST through a simulated optical black box (784 -> 1000
  intensities, 2% measurement noise), physical FF without and with drift,
  beside backprop through the noiseless digital twin.
- `conv`: CIFAR-10, FF with `LocallyConnected2D` blocks (local receptive
  fields, as in the FF paper), with `Conv2D` blocks, and channel-wise
  competitive FF (`goodness="channelwise"`) with Conv2D-ReLU-pool-BatchNorm
  blocks, each beside the same blocks trained with backprop
  (`--conv-variants` picks some).
- `sf`: single forward (SF) and top-down SF against FF and backprop, dense
  blocks, on MNIST and on CIFAR-10 (flattened).

Every run appends a record to the JSON file given by `--out` (written after
each run, so an interrupted command keeps what it finished) and the command
ends with a markdown table. Full size (the defaults):

    KERAS_BACKEND=jax python benchmarks/forward_forward_family.py --experiment all --out ff_family.json

Reduced CPU check:

    KERAS_BACKEND=jax python benchmarks/forward_forward_family.py --experiment all \
        --train 1000 --test 500 --epochs 1 --out /tmp/ff_family_small.json
"""

import argparse
import json
import os
import platform
import time

import keras

from keras_local.datasets import load_cifar10
from keras_local.datasets import load_mnist
from keras_local.layers.black_box import BlackBox
from keras_local.layers.locally_connected2d import LocallyConnected2D
from keras_local.layers.simulated_physical_system import SimulatedPhysicalSystem
from keras_local.models.forward_forward_model import ForwardForwardModel
from keras_local.models.physical_forward_forward_model import PhysicalForwardForwardModel
from keras_local.models.single_forward_model import SingleForwardModel

EXPERIMENTS = ("physical", "conv", "sf")
DEFAULT_EPOCHS = {"physical": 10, "conv": 10, "sf": 10}
CE = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


class Recorder:
    def __init__(self, path, args):
        self.path = path
        self.header = {
            "backend": keras.backend.backend(),
            "keras": keras.__version__,
            "machine": platform.platform(),
            "device": _device(),
            "args": vars(args),
        }
        self.runs = []

    def add(self, record):
        self.runs.append(record)
        print(
            f"| {record['experiment']} | {record['dataset']} | {record['rule']} | "
            f"{record['epochs']} | {record['test_accuracy']:.4f} | "
            f"{record['seconds_per_epoch']:.1f} |",
            flush=True,
        )
        if self.path:
            with open(self.path, "w") as f:
                json.dump({**self.header, "runs": self.runs}, f, indent=1)

    def table(self):
        lines = [
            "| experiment | dataset | rule | epochs | test accuracy | s/epoch |",
            "|---|---|---|---|---|---|",
        ]
        for r in self.runs:
            lines.append(
                f"| {r['experiment']} | {r['dataset']} | {r['rule']} | {r['epochs']} | "
                f"{r['test_accuracy']:.4f} | {r['seconds_per_epoch']:.1f} |"
            )
        return "\n".join(lines)


def _device():
    try:
        return str(keras.distribution.list_devices()[0])
    except Exception:  # noqa: BLE001 - not every backend lists devices
        return "unknown"


def fit_eval(recorder, experiment, dataset, rule, model, data, args, epochs,
             learning_rate=1e-3, loss=None, eval_batch_size=None, cosine_floor=None):
    """Trains with Adam at `learning_rate`, constant, or with `cosine_floor`
    set, cosine-decayed over the whole run down to `cosine_floor` times it."""
    wanted = [f for f in (args.rule_filter or "").split("|") if f]
    if wanted and not any(f in rule for f in wanted):
        return
    x, y, xt, yt = data
    print(f"-- {experiment} / {dataset} / {rule}", flush=True)
    schedule = learning_rate
    if cosine_floor is not None:
        steps = epochs * -(-len(x) // args.batch_size)
        schedule = keras.optimizers.schedules.CosineDecay(
            learning_rate, steps, alpha=cosine_floor)
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss=loss,
                  metrics=["accuracy"])
    start = time.time()
    validation = None
    if args.validate:
        validation = (xt[:args.validate], yt[:args.validate])
    history = model.fit(x, y, batch_size=args.batch_size, epochs=epochs,
                        verbose=args.verbose, validation_data=validation,
                        validation_batch_size=eval_batch_size)
    seconds = (time.time() - start) / epochs
    accuracy = float(model.evaluate(xt, yt, batch_size=eval_batch_size or args.batch_size,
                                    verbose=0)[1])
    recorder.add({
        "experiment": experiment, "dataset": dataset, "rule": rule,
        "epochs": epochs, "train": len(x), "test": len(xt),
        "batch_size": args.batch_size, "learning_rate": learning_rate,
        "cosine_floor": cosine_floor,
        "test_accuracy": accuracy, "seconds_per_epoch": seconds,
        "final_train_loss": float(history.history["loss"][-1]),
    })


def mnist(args):
    (x, y), (xt, yt) = load_mnist()
    n, nt = args.train or len(x), args.test or len(xt)
    return (x[:n].reshape(-1, 784).astype("float32") / 255, y[:n].astype("int32"),
            xt[:nt].reshape(-1, 784).astype("float32") / 255, yt[:nt].astype("int32"))


def cifar10(args, standardize=False):
    """CIFAR-10 in [0, 1], or standardised per channel with the training
    images' statistics."""
    (x, y), (xt, yt) = load_cifar10(max_train=args.train, max_test=args.test)
    x, xt = x.astype("float32") / 255, xt.astype("float32") / 255
    if standardize:
        mean, std = x.mean(axis=(0, 1, 2)), x.std(axis=(0, 1, 2))
        x, xt = (x - mean) / std, (xt - mean) / std
    return x, y.reshape(-1).astype("int32"), xt, yt.reshape(-1).astype("int32")


def dense_blocks(units, layers):
    return [keras.layers.Dense(units, activation="relu") for _ in range(layers)]


def backprop_net(input_shape, blocks):
    return keras.Sequential([keras.Input(input_shape)] + blocks + [
        keras.layers.Flatten(), keras.layers.Dense(10)])


# ---------------------------------------------------------------------- #
def run_physical(recorder, args):
    data = mnist(args)
    epochs = args.epochs or DEFAULT_EPOCHS["physical"]
    width = args.physical_width
    floor = None if args.physical_cosine_floor < 0 else args.physical_cosine_floor

    def system(drift, noise=0.02):
        return SimulatedPhysicalSystem(784, width, noise=noise, drift=drift, seed=0)

    for drift in (0.0, args.drift):
        model = PhysicalForwardForwardModel(
            [BlackBox(system(drift))],
            [keras.layers.Dense(args.physical_units, activation="relu")], 10,
            measurement_normalization="layer", label_scale=args.label_scale,
            readout=args.physical_readout, seed=0,
        )
        readout = "" if args.physical_readout is None else ", softmax read-out"
        fit_eval(recorder, "physical", "mnist",
                 f"physical FF (noise 2%, drift {drift}{readout})", model, data, args,
                 epochs, learning_rate=args.physical_lr, cosine_floor=floor)
    twin = keras.Sequential([
        keras.Input((784,)), system(0.0, noise=0.0).digital_twin(),
        keras.layers.LayerNormalization(center=False, scale=False),
        keras.layers.Dense(args.physical_units, activation="relu"), keras.layers.Dense(10),
    ])
    fit_eval(recorder, "physical", "mnist", "backprop through the digital twin", twin,
             data, args, epochs, loss=CE, learning_rate=args.physical_lr, cosine_floor=floor)


def run_conv(recorder, args):
    epochs = args.epochs or DEFAULT_EPOCHS["conv"]
    variants = args.conv_variants.split(",")
    if "channelwise" in variants:
        run_channelwise_conv(recorder, args, epochs)
    if not {"locally_connected", "conv"} & set(variants):
        return
    data = cifar10(args)

    def local_blocks():
        return [LocallyConnected2D(args.lc_filters, args.lc_kernel, padding="same",
                                   activation="relu") for _ in range(args.conv_layers)]

    def conv_blocks():
        return [keras.layers.Conv2D(args.conv_filters, 3, padding="same", activation="relu")
                for _ in range(args.conv_layers)]

    for name, blocks in (("locally connected", local_blocks), ("conv", conv_blocks)):
        if name.replace(" ", "_") not in variants:
            continue
        ff_model = ForwardForwardModel(
            blocks(), 10, threshold=args.conv_threshold, label_embedding="append",
            peer_normalization=0.03, skip_first_block=args.conv_layers > 1,
            readout=args.conv_readout, seed=0,
        )
        readout = "" if args.conv_readout is None else " + softmax read-out"
        # Scoring runs 10 labelled copies of each test image at once.
        fit_eval(recorder, "conv", "cifar10", f"FF, {name} blocks{readout}", ff_model, data, args,
                 epochs, learning_rate=args.conv_lr, eval_batch_size=args.eval_batch_size)
        fit_eval(recorder, "conv", "cifar10", f"backprop, same {name} blocks",
                 backprop_net(data[0].shape[1:], blocks()), data, args, epochs, loss=CE)


def run_channelwise_conv(recorder, args, epochs):
    """Channel-wise competitive FF (CwC loss, top block's class goodness as
    the prediction) beside backprop through the same blocks plus a dense
    head; Adam with the same cosine decay to 0 for both."""
    data = cifar10(args, standardize=True)

    def blocks():
        return [keras.Sequential([
            keras.layers.Conv2D(int(f), 3, padding="same"), keras.layers.ReLU(),
            keras.layers.MaxPooling2D(2), keras.layers.BatchNormalization(momentum=0.9),
        ]) for f in args.cwc_filters.split(",")]

    model = ForwardForwardModel(
        blocks(), 10, goodness="channelwise", loss="competitive",
        normalization=args.cwc_normalization, scored_blocks=1, seed=0,
    )
    fit_eval(recorder, "conv", "cifar10", "FF, channel-wise competitive, conv-BN blocks",
             model, data, args, epochs, learning_rate=args.cwc_lr, cosine_floor=0.0)
    fit_eval(recorder, "conv", "cifar10", "backprop, same conv-BN blocks",
             backprop_net(data[0].shape[1:], blocks()), data, args, epochs, loss=CE,
             learning_rate=args.cwc_lr, cosine_floor=0.0)


def run_sf(recorder, args):
    epochs = args.epochs or DEFAULT_EPOCHS["sf"]
    for dataset, loader in (("mnist", mnist), ("cifar10", cifar10)):
        x, y, xt, yt = loader(args)
        data = (x.reshape(len(x), -1), y, xt.reshape(len(xt), -1), yt)
        layers, units = args.sf_layers, args.units

        def blocks():
            return dense_blocks(units, layers)

        fit_eval(recorder, "sf", dataset, "SF (T=0.1)",
                 SingleForwardModel(blocks(), 10, temperature=0.1, seed=0), data, args, epochs)
        fit_eval(recorder, "sf", dataset, "top-down SF (T=0.1)",
                 SingleForwardModel(blocks(), 10, rule="sf_topdown", temperature=0.1, seed=0),
                 data, args, epochs)
        fit_eval(recorder, "sf", dataset, "FF",
                 ForwardForwardModel(blocks(), 10, seed=0), data, args, epochs)
        fit_eval(recorder, "sf", dataset, "backprop",
                 backprop_net(data[0].shape[1:], blocks()), data, args, epochs, loss=CE)


def _threshold(value):
    return value if value == "width" else float(value)


RUNNERS = {"physical": run_physical, "conv": run_conv, "sf": run_sf}


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", default="all",
                        help="comma-separated subset of physical,conv,sf, or all. "
                             "Defaults to all.")
    parser.add_argument("--out", default=None, help="JSON results file.")
    parser.add_argument("--train", type=int, default=None,
                        help="training images (default: all: 60k MNIST, 50k CIFAR-10).")
    parser.add_argument("--test", type=int, default=None, help="test images (default: all 10k).")
    parser.add_argument("--epochs", type=int, default=None,
                        help=f"epochs of every rule (default per experiment: {DEFAULT_EPOCHS}).")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--units", type=int, default=500, help="width of the SF/FF dense blocks.")
    parser.add_argument("--sf-layers", type=int, default=2)
    parser.add_argument("--physical-width", type=int, default=1000,
                        help="intensities measured by the simulated system.")
    parser.add_argument("--physical-units", type=int, default=1000)
    parser.add_argument("--physical-lr", type=float, default=1e-3)
    parser.add_argument("--physical-readout", choices=["none", "softmax"], default="softmax",
                        help="softmax: a local linear read-out on the digital activities; "
                             "none: predict by goodness (one pass per class).")
    parser.add_argument("--physical-cosine-floor", type=float, default=0.1,
                        help="cosine-decay the physical runs' learning rate (all three "
                             "rows) down to this fraction of it; negative: constant rate. "
                             "A floor above 0 keeps the digital layers tracking a drifting box.")
    parser.add_argument("--label-scale", type=float, default=1.0,
                        help="value of the one-hot label appended to the physical FF "
                             "digital layer's input.")
    parser.add_argument("--drift", type=float, default=1e-4,
                        help="medium rotation per box call in the drifting run.")
    parser.add_argument("--conv-layers", type=int, default=3)
    parser.add_argument("--conv-filters", type=int, default=64)
    parser.add_argument("--lc-filters", type=int, default=3,
                        help="filters per position (3 x 32 x 32 = 3072 units, as in the FF paper).")
    parser.add_argument("--lc-kernel", type=int, default=11)
    parser.add_argument("--conv-lr", type=float, default=1e-3)
    parser.add_argument("--eval-batch-size", type=int, default=25,
                        help="test batch of the conv FF scoring (x10 labels).")
    parser.add_argument("--conv-readout", choices=["none", "softmax"], default="none")
    parser.add_argument("--conv-variants", default="locally_connected,conv,channelwise",
                        help="comma-separated subset of locally_connected,conv,channelwise.")
    parser.add_argument("--cwc-filters", default="40,80,160,320",
                        help="channels of the channel-wise FF blocks (multiples of 10).")
    parser.add_argument("--cwc-lr", type=float, default=1e-3,
                        help="Adam rate of the channel-wise FF run and its backprop twin, "
                             "cosine-decayed to 0.")
    parser.add_argument("--cwc-normalization", choices=["none", "rms"], default="none",
                        help="length normalisation between the channel-wise FF blocks.")
    parser.add_argument("--conv-threshold", type=_threshold, default="width",
                        help="'width' (sum of squares against the block size) or a float "
                             "(mean of squares against it).")
    parser.add_argument("--rule-filter", default=None,
                        help="'|'-separated substrings: run only the rules whose name "
                             "contains one (e.g. 'backprop' or 'FF, locally|SF').")
    parser.add_argument("--validate", type=int, default=0,
                        help="validate on this many test images after every epoch "
                             "(shown with --verbose 2).")
    parser.add_argument("--verbose", type=int, default=0)
    args = parser.parse_args(argv)
    args.physical_readout = None if args.physical_readout == "none" else args.physical_readout
    args.conv_readout = None if args.conv_readout == "none" else args.conv_readout
    names = EXPERIMENTS if args.experiment == "all" else tuple(args.experiment.split(","))
    unknown = [n for n in names if n not in EXPERIMENTS]
    if unknown:
        parser.error(f"unknown experiment(s) {unknown}; expected some of {EXPERIMENTS}")
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    recorder = Recorder(args.out, args)
    print(f"backend={keras.backend.backend()} device={recorder.header['device']} "
          f"experiments={','.join(names)} train={args.train or 'all'} "
          f"test={args.test or 'all'} epochs={args.epochs or DEFAULT_EPOCHS}", flush=True)
    print("| experiment | dataset | rule | epochs | test accuracy | s/epoch |\n|---|---|---|---|---|---|")
    for name in names:
        RUNNERS[name](recorder, args)
    print("\n" + recorder.table())
    return recorder


if __name__ == "__main__":
    main()
