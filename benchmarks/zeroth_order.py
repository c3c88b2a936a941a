"""Zeroth-order training benchmarks: compiled train-step memory (JAX probe).

Measures, on one model and batch, in the same run:
- `inference`: XLA temporary bytes of a train step that only runs the
  forward pass (zero update), i.e. the memory of inference inside the same
  donated-state step;
- `zo_sgd`: ZerothOrderModel + SGD (MeZO);
- `zo_adam`, `forward_gradient`: for reference;
- `backprop_adam`: plain Keras `fit` of the same model with Adam.

Usage:
    kl jax python benchmarks/zeroth_order.py memory --width 2048 --depth 3
"""

import argparse
import json

import keras
import numpy as np

from keras_local import backend
from keras_local.models.local_model import LocalModel
from keras_local.models.zeroth_order_model import ZerothOrderModel


class InferenceProbe(LocalModel):
    """A rule whose step is one inference forward pass and a zero update."""

    def __init__(self, model, **kwargs):
        super().__init__(**kwargs)
        self.model = model

    def build(self, input_shape):
        if not self.model.built:
            self.model.build(input_shape)
        self.built = True

    def call(self, x, training=False):
        return self.model(x, training=training)

    def local_grads(self, tv, ntv, x, y, sample_weight):
        y_pred, _ = self.stateless_call(tv, ntv, x, training=False)
        loss = self._compile_loss(y, y_pred, sample_weight)
        # Zero update that depends on the loss, so XLA schedules it after
        # the forward and updates the donated buffers in place.
        grads = [keras.ops.zeros_like(v) * keras.ops.cast(loss, v.dtype) for v in tv]
        return grads, ntv, loss, y_pred, {}


def mlp(input_dim, width, depth, num_classes):
    layers = [keras.Input((input_dim,))]
    layers += [keras.layers.Dense(width, activation="relu") for _ in range(depth)]
    layers += [keras.layers.Dense(num_classes)]
    return keras.Sequential(layers)


def loss_fn():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def memory(args):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.batch_size, args.input_dim)).astype("float32")
    y = rng.integers(0, 10, size=(args.batch_size,)).astype("int32")
    rows = {}

    def probe(name, model, optimizer):
        model.compile(optimizer=optimizer, loss=loss_fn())
        report = backend.train_step_memory(model, x, y)
        rows[name] = report.bytes
        return model

    net = mlp(args.input_dim, args.width, args.depth, 10)
    net.build((None, args.input_dim))
    params = sum(int(np.prod(v.shape)) for v in net.trainable_variables) * 4
    largest = max(int(np.prod(v.shape)) for v in net.trainable_variables) * 4
    probe("inference", InferenceProbe(mlp(args.input_dim, args.width, args.depth, 10)),
          keras.optimizers.SGD(0.0))
    probe("zo_sgd", ZerothOrderModel(mlp(args.input_dim, args.width, args.depth, 10), seed=0),
          keras.optimizers.SGD(1e-3))
    probe("zo_sgd_q4", ZerothOrderModel(mlp(args.input_dim, args.width, args.depth, 10),
                                        num_queries=4, seed=0),
          keras.optimizers.SGD(1e-3))
    probe("zo_adam", ZerothOrderModel(mlp(args.input_dim, args.width, args.depth, 10), seed=0),
          keras.optimizers.Adam(1e-3))
    probe("forward_gradient", ZerothOrderModel(
        mlp(args.input_dim, args.width, args.depth, 10),
        estimator="forward_gradient", seed=0), keras.optimizers.SGD(1e-3))
    probe("backprop_adam", mlp(args.input_dim, args.width, args.depth, 10),
          keras.optimizers.Adam(1e-3))
    bound = rows["inference"] + 2 * largest
    result = {
        "backend": backend.BACKEND,
        "model": f"MLP {args.input_dim}-{'-'.join([str(args.width)] * args.depth)}-10",
        "batch_size": args.batch_size,
        "parameter_bytes": params,
        "largest_variable_bytes": largest,
        "temp_bytes": rows,
        "bound_inference_plus_2x_largest": bound,
        "zo_sgd_within_bound": rows["zo_sgd"] is not None and rows["zo_sgd"] <= bound,
        "zo_sgd_over_backprop_adam": None if not rows["backprop_adam"]
        else rows["zo_sgd"] / rows["backprop_adam"],
    }
    print(json.dumps(result, indent=2))
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("memory", help="JAX train-step temporary memory")
    m.add_argument("--input-dim", type=int, default=1024)
    m.add_argument("--width", type=int, default=2048)
    m.add_argument("--depth", type=int, default=3)
    m.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    if args.command == "memory":
        memory(args)


if __name__ == "__main__":
    main()
