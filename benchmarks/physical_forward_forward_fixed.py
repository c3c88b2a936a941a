"""Physical FF tuning on a validation split carved from the MNIST training set.

The simulated optical box (784 -> `--width` intensities, 2% noise) is, by
default, measured once per image; an identity tensor `BlackBox` then feeds
those measurements to `PhysicalForwardForwardModel`, so each configuration
trains the same digital layer as the live benchmark without the per-step
NumPy call (and without drift). `--live` calls the box every step instead,
with `--drift`. Training uses the first `--train` training images, the
validation the last `--val` ones (never the test set). Prints one JSON line
per run with the validation accuracy after every epoch, and appends it to
`--out` if given.

    KERAS_BACKEND=jax python benchmarks/physical_forward_forward_fixed.py \
        --train 55000 --epochs 10 --label-scale 1 --cosine-floor 0.1
"""

import argparse
import json
import time

import keras
import numpy as np

from keras_local.datasets import load_mnist
from keras_local.layers.black_box import BlackBox
from keras_local.layers.simulated_physical_system import SimulatedPhysicalSystem
from keras_local.models.physical_forward_forward_model import PhysicalForwardForwardModel


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=55000)
    parser.add_argument("--val", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--width", type=int, default=1000)
    parser.add_argument("--units", type=int, default=1000)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--cosine-floor", type=float, default=0.1,
                        help="cosine decay down to this fraction; negative: constant rate.")
    parser.add_argument("--label-scale", type=float, default=1.0)
    parser.add_argument("--threshold", type=float, default=2.0)
    parser.add_argument("--readout", choices=["none", "softmax"], default="softmax")
    parser.add_argument("--measurement-normalization", default="layer")
    parser.add_argument("--live", action="store_true", help="call the box every step.")
    parser.add_argument("--drift", type=float, default=0.0, help="with --live only.")
    parser.add_argument("--out", default=None, help="JSON-lines file to append to.")
    args = parser.parse_args()
    if args.train + args.val > 60000:
        parser.error("--train + --val must not exceed the 60,000 training images")
    keras.utils.set_random_seed(0)
    (x, y), _ = load_mnist()
    x = x.reshape(-1, 784).astype("float32") / 255
    y = y.astype("int32")
    x_train, y_train = x[:args.train], y[:args.train]
    x_val, y_val = x[-args.val:], y[-args.val:]
    system = SimulatedPhysicalSystem(784, args.width, noise=0.02,
                                     drift=args.drift if args.live else 0.0, seed=0)
    if args.live:
        box = BlackBox(system)
    else:
        def measure(a):
            return np.concatenate([system(a[i:i + 500]) for i in range(0, len(a), 500)])

        x_train, x_val = measure(x_train), measure(x_val)
        box = BlackBox(lambda t: t, mode="tensor")
    model = PhysicalForwardForwardModel(
        [box], [keras.layers.Dense(args.units, activation="relu")], 10,
        threshold=args.threshold, measurement_normalization=args.measurement_normalization,
        label_scale=args.label_scale,
        readout=None if args.readout == "none" else args.readout, seed=0,
    )
    rate = args.learning_rate
    if args.cosine_floor >= 0:
        steps = args.epochs * -(-args.train // 100)
        rate = keras.optimizers.schedules.CosineDecay(rate, steps, alpha=args.cosine_floor)
    model.compile(optimizer=keras.optimizers.Adam(rate), metrics=["accuracy"])
    start = time.time()
    history = model.fit(x_train, y_train, batch_size=100, epochs=args.epochs, verbose=0,
                        validation_data=(x_val, y_val))
    record = {k: v for k, v in vars(args).items() if k != "out"}
    record["val_accuracy"] = [round(float(a), 4) for a in history.history["val_accuracy"]]
    record["seconds"] = round(time.time() - start, 1)
    print(json.dumps(record), flush=True)
    if args.out:
        with open(args.out, "a") as f:
            f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
