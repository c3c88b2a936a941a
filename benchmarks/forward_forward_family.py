"""Forward-Forward family benchmark: SF, top-down SF, physical FF (with and
without drift, beside backprop through the digital twin), conv FF vs
backprop on a CIFAR-10 subset.

    kl jax python benchmarks/forward_forward_family.py --experiment sf --train 10000 --epochs 3
    kl jax python benchmarks/forward_forward_family.py --experiment physical --train 10000 --epochs 3
    kl jax python benchmarks/forward_forward_family.py --experiment conv --train 5000 --epochs 3
"""

import argparse
import time

import keras
import numpy as np

from keras_local.datasets import load_cifar10
from keras_local.datasets import load_mnist
from keras_local.layers.black_box import BlackBox
from keras_local.layers.simulated_physical_system import SimulatedPhysicalSystem
from keras_local.models.forward_forward_model import ForwardForwardModel
from keras_local.models.physical_forward_forward_model import PhysicalForwardForwardModel
from keras_local.models.single_forward_model import SingleForwardModel


def fit_eval(name, model, x, y, xt, yt, epochs, loss=None):
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss, metrics=["accuracy"])
    start = time.time()
    model.fit(x, y, batch_size=100, epochs=epochs, verbose=0)
    seconds = (time.time() - start) / epochs
    accuracy = model.evaluate(xt, yt, verbose=0)[1]
    print(f"| {name} | {accuracy:.4f} | {seconds:.1f} |", flush=True)


def mnist(n_train, n_test):
    (x, y), (xt, yt) = load_mnist()
    return (x[:n_train].reshape(-1, 784).astype("float32") / 255, y[:n_train],
            xt[:n_test].reshape(-1, 784).astype("float32") / 255, yt[:n_test])


def backprop_mlp(units, layers=2):
    return keras.Sequential([keras.Input((784,))] + [
        keras.layers.Dense(units, activation="relu") for _ in range(layers)
    ] + [keras.layers.Dense(10)])


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--experiment", choices=["sf", "physical", "conv"], required=True)
    parser.add_argument("--train", type=int, default=10000)
    parser.add_argument("--test", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--units", type=int, default=500)
    args = parser.parse_args()
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    print(f"backend={keras.backend.backend()} train={args.train} test={args.test} epochs={args.epochs}")
    print("| rule | test accuracy | s/epoch |\n|---|---|---|")
    if args.experiment == "sf":
        x, y, xt, yt = mnist(args.train, args.test)
        blocks = lambda: [keras.layers.Dense(args.units, activation="relu") for _ in range(2)]
        fit_eval("SF (T=0.1)", SingleForwardModel(blocks(), 10, temperature=0.1, seed=0), x, y, xt, yt, args.epochs)
        fit_eval("top-down SF (T=0.1)", SingleForwardModel(blocks(), 10, rule="sf_topdown", temperature=0.1, seed=0), x, y, xt, yt, args.epochs)
        fit_eval("FF", ForwardForwardModel(blocks(), 10, seed=0), x, y, xt, yt, args.epochs)
        fit_eval("backprop", backprop_mlp(args.units), x, y, xt, yt, args.epochs, loss=ce)
    elif args.experiment == "physical":
        x, y, xt, yt = mnist(args.train, args.test)
        for drift in (0.0, 1e-4):
            system = SimulatedPhysicalSystem(784, 1000, noise=0.02, drift=drift, seed=0)
            model = PhysicalForwardForwardModel(
                [BlackBox(system)], [keras.layers.Dense(args.units, activation="relu")], 10,
                label_scale=5.0, seed=0)
            fit_eval(f"physical FF, noise 2%, drift {drift}", model, x, y, xt, yt, args.epochs)
        system = SimulatedPhysicalSystem(784, 1000, noise=0.0, seed=0)
        twin = keras.Sequential([keras.Input((784,)), system.digital_twin(),
                                 keras.layers.LayerNormalization(center=False, scale=False),
                                 keras.layers.Dense(args.units, activation="relu"), keras.layers.Dense(10)])
        fit_eval("backprop through digital twin", twin, x, y, xt, yt, args.epochs, loss=ce)
    else:
        (x, y), (xt, yt) = load_cifar10(max_train=args.train, max_test=args.test)
        x = x.astype("float32") / 255
        xt = xt.astype("float32") / 255
        convs = lambda: [keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
                         keras.layers.Conv2D(64, 3, padding="same", activation="relu")]
        fit_eval("conv FF (threshold=width)", ForwardForwardModel(
            convs(), 10, threshold="width", seed=0), x, y.reshape(-1), xt, yt.reshape(-1), args.epochs)
        bp = keras.Sequential([keras.Input(x.shape[1:])] + convs() + [
            keras.layers.Flatten(), keras.layers.Dense(10)])
        fit_eval("same convs, backprop", bp, x, y.reshape(-1), xt, yt.reshape(-1), args.epochs, loss=ce)


if __name__ == "__main__":
    main()
