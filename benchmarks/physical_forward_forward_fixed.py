"""Physical FF tuning on fixed measurements (fast: no host call per step).

The simulated optical box (784 -> 1000 intensities, 2% noise, no drift) is
measured once per image; an identity tensor `BlackBox` then feeds those
measurements to `PhysicalForwardForwardModel`, so each configuration trains
the same digital layer as the live benchmark, without the per-step NumPy
call and without drift. Prints the validation accuracy after every epoch.

    KERAS_BACKEND=jax python benchmarks/physical_forward_forward_fixed.py \
        --train 20000 --test 2000 --epochs 5 --units 1000 --readout softmax
"""

import argparse

import keras
import numpy as np

from keras_local.datasets import load_mnist
from keras_local.layers.black_box import BlackBox
from keras_local.layers.simulated_physical_system import SimulatedPhysicalSystem
from keras_local.models.physical_forward_forward_model import PhysicalForwardForwardModel


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=60000)
    parser.add_argument("--test", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--units", type=int, default=1000)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--label-scale", type=float, default=5.0)
    parser.add_argument("--readout", choices=["none", "softmax"], default="none")
    parser.add_argument("--measurement-normalization", default="layer")
    args = parser.parse_args()
    (x, y), (xt, yt) = load_mnist()
    system = SimulatedPhysicalSystem(784, 1000, noise=0.02, seed=0)

    def measure(a):
        a = a.reshape(-1, 784).astype("float32") / 255
        return np.concatenate([system(a[i:i + 1000]) for i in range(0, len(a), 1000)])

    x, xt = measure(x[:args.train]), measure(xt[:args.test])
    model = PhysicalForwardForwardModel(
        [BlackBox(lambda t: t, mode="tensor")],
        [keras.layers.Dense(args.units, activation="relu")], 10,
        measurement_normalization=args.measurement_normalization,
        label_scale=args.label_scale,
        readout=None if args.readout == "none" else args.readout, seed=0,
    )
    model.compile(optimizer=keras.optimizers.Adam(args.learning_rate), metrics=["accuracy"])
    history = model.fit(x, y[:args.train], batch_size=100, epochs=args.epochs, verbose=2,
                        validation_data=(xt, yt[:args.test]))
    print("validation accuracy per epoch:",
          " ".join(f"{a:.4f}" for a in history.history["val_accuracy"]))


if __name__ == "__main__":
    main()
