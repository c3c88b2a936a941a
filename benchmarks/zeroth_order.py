"""Zeroth-order training benchmarks: compiled train-step memory (JAX probe).

Measures, on one model and batch, in the same run:
- `inference`: XLA temporary bytes of a train step that only runs the
  forward pass (zero update), i.e. the memory of inference inside the same
  donated-state step;
- `zo_sgd`: ZerothOrderModel + SGD (MeZO);
- `zo_adam`, `forward_gradient`: for reference;
- `backprop_adam`: plain Keras `fit` of the same model with Adam.

Also `dropout`: ZO-SGD on MNIST with and without a `Dropout` layer (the
two SPSA passes of a step must see the same dropout masks).

Usage:
    kl jax python benchmarks/zeroth_order.py memory --width 2048 --depth 3
    kl jax python benchmarks/zeroth_order.py memory --model minilm --batch-size 16
    kl jax python benchmarks/zeroth_order.py dropout --lr 3e-3 --epochs 10
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


def minilm_factory(args):
    """A fresh pretrained MiniLM classifier per call, and a token batch."""
    from keras_local.benchmark.minilm_classifier import load_minilm
    from keras_local.benchmark.minilm_classifier import minilm_classifier

    rng = np.random.default_rng(0)
    ids = rng.integers(1000, 30000, size=(args.batch_size, args.length)).astype("int32")
    x = {"token_ids": ids, "segment_ids": np.zeros_like(ids),
         "padding_mask": np.ones_like(ids)}
    y = rng.integers(0, 2, size=(args.batch_size,)).astype("int32")

    def build():
        backbone, _ = load_minilm()
        return minilm_classifier(backbone, args.length)

    name = f"MiniLM-L6 classifier (BertBackbone + mean pool + Dense(2)), length {args.length}"
    return build, x, y, name


def memory(args):
    rng = np.random.default_rng(0)
    if args.model == "minilm":
        make, x, y, model_name = minilm_factory(args)
    else:
        x = rng.normal(size=(args.batch_size, args.input_dim)).astype("float32")
        y = rng.integers(0, 10, size=(args.batch_size,)).astype("int32")
        make = lambda: mlp(args.input_dim, args.width, args.depth, 10)
        model_name = f"MLP {args.input_dim}-{'-'.join([str(args.width)] * args.depth)}-10"
    rows = {}

    def probe(name, model, optimizer):
        model.compile(optimizer=optimizer, loss=loss_fn())
        report = backend.train_step_memory(model, x, y)
        rows[name] = report.bytes
        return model

    net = make()
    params = sum(int(np.prod(v.shape)) for v in net.trainable_variables) * 4
    largest = max(int(np.prod(v.shape)) for v in net.trainable_variables) * 4
    probe("inference", InferenceProbe(make()), keras.optimizers.SGD(0.0))
    probe("zo_sgd", ZerothOrderModel(make(), seed=0), keras.optimizers.SGD(1e-3))
    if args.model == "mlp":
        probe("zo_sgd_q4", ZerothOrderModel(make(), num_queries=4, seed=0),
              keras.optimizers.SGD(1e-3))
    probe("zo_adam", ZerothOrderModel(make(), seed=0), keras.optimizers.Adam(1e-3))
    probe("forward_gradient", ZerothOrderModel(make(), estimator="forward_gradient", seed=0),
          keras.optimizers.SGD(1e-3))
    probe("backprop_adam", make(), keras.optimizers.Adam(1e-3))
    bound = rows["inference"] + 2 * largest
    result = {
        "backend": backend.BACKEND,
        "model": model_name,
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


def dropout(args):
    """ZO-SGD on an MNIST MLP (784-32-[Dropout]-10), the same seeds, with
    each dropout rate: test accuracy and the logged projected gradient."""
    import time

    from keras_local.datasets import load_mnist

    (x, y), (x_test, y_test) = load_mnist()
    x = x[: args.train].reshape(-1, 784).astype("float32") / 255.0
    y = y[: args.train]
    x_test = x_test.reshape(-1, 784).astype("float32") / 255.0
    results = []
    for rate in args.rates:
        keras.utils.set_random_seed(args.seed)
        layers = [keras.Input((784,)), keras.layers.Dense(32, activation="relu")]
        if rate:
            layers.append(keras.layers.Dropout(rate))
        net = keras.Sequential(layers + [keras.layers.Dense(10)])
        model = ZerothOrderModel(net, epsilon=1e-3, seed=args.seed)
        model.compile(optimizer=keras.optimizers.SGD(args.lr), loss=loss_fn(),
                      metrics=["accuracy"])
        start = time.time()
        history = model.fit(x, y, batch_size=64, epochs=args.epochs, verbose=0)
        accuracy = model.evaluate(x_test, y_test, verbose=0, return_dict=True)["accuracy"]
        results.append({
            "dropout": rate,
            "test_accuracy": float(accuracy),
            "train_loss_per_epoch": [float(v) for v in history.history["loss"]],
            "projected_gradient_per_epoch": [
                float(v) for v in history.history["projected_gradient"]
            ],
            "seconds": time.time() - start,
        })
        print(json.dumps(results[-1]), flush=True)
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("memory", help="JAX train-step temporary memory")
    m.add_argument("--model", choices=["mlp", "minilm"], default="mlp")
    m.add_argument("--length", type=int, default=48, help="MiniLM sequence length")
    m.add_argument("--input-dim", type=int, default=1024)
    m.add_argument("--width", type=int, default=2048)
    m.add_argument("--depth", type=int, default=3)
    m.add_argument("--batch-size", type=int, default=32)
    d = sub.add_parser("dropout", help="ZO-SGD on MNIST with and without dropout")
    d.add_argument("--rates", type=float, nargs="+", default=[0.0, 0.3])
    d.add_argument("--lr", type=float, default=3e-3)
    d.add_argument("--epochs", type=int, default=10)
    d.add_argument("--train", type=int, default=20000)
    d.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.command == "memory":
        memory(args)
    elif args.command == "dropout":
        dropout(args)


if __name__ == "__main__":
    main()
