"""Trains each rule on the same data and layer sizes and compares them."""

import json
import os

import keras
import numpy as np

from keras_local import backend
from keras_local.backend.common import MemoryReport
from keras_local.callbacks import EpochTimer
from keras_local.benchmark.benchmark_spec import BenchmarkSpec
from keras_local.benchmark.registry import baseline_of
from keras_local.benchmark.registry import get_rule


def load_benchmark_data(dataset, max_train=None, log=print):
    """Returns `(name, (x, y), (x_test, y_test), input_shape, num_classes)`.

    MNIST and digits come flattened and scaled to [0, 1]; CIFAR-10 as
    images in [0, 1]. Falls back to digits when MNIST is missing offline.
    """
    from keras_local import datasets

    if dataset == "mnist":
        try:
            (x, y), (xt, yt) = datasets.load_mnist()
        except FileNotFoundError as missing:
            log(f"MNIST not found nor downloadable ({missing}); falling back to load_digits.")
            dataset = "digits"
    if dataset == "digits":
        (x, y), (xt, yt) = datasets.load_digits()
    elif dataset == "cifar10":
        (x, y), (xt, yt) = datasets.load_cifar10(max_train=max_train)
    elif dataset != "mnist":
        raise ValueError(
            "Unknown dataset. Expected one of ('mnist', 'digits', 'cifar10'). "
            f"Received: dataset={dataset!r}"
        )
    if max_train:
        x, y = x[:max_train], y[:max_train]
    scale = lambda a: a.astype("float32") / 255.0
    if dataset in ("mnist", "digits"):
        x, xt = scale(x).reshape(len(x), -1), scale(xt).reshape(len(xt), -1)
    else:
        x, xt = scale(x), scale(xt)
    y, yt = y.astype("int32"), yt.astype("int32")
    return dataset, (x, y), (xt, yt), x.shape[1:], int(max(y.max(), yt.max())) + 1


def learning_rate_schedule(learning_rate, schedule, total_steps):
    """The learning rate every rule gets: constant, or cosine-decayed to 0."""
    if schedule == "constant":
        return learning_rate
    if schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=total_steps)
    raise ValueError(
        "Unknown learning-rate schedule. Expected 'constant' or 'cosine'. "
        f"Received: schedule={schedule!r}"
    )


def run_benchmark(
    dataset="mnist",
    rules=("backprop", "forward_forward"),
    epochs=2,
    batch_size=100,
    hidden_units=(500, 500),
    learning_rate=1e-3,
    schedule="constant",
    max_train=None,
    memory_batch_size=None,
    seed=0,
    output_dir="benchmarks/out",
    verbose=1,
    log=print,
):
    """Runs the comparison; returns the list of result dicts."""
    dataset, (x, y), (xt, yt), input_shape, num_classes = load_benchmark_data(
        dataset, max_train, log
    )
    log(
        f"keras-local benchmark: backend={keras.backend.backend()} dataset={dataset} "
        f"train={len(x)} test={len(xt)} epochs={epochs} batch_size={batch_size} "
        f"hidden={list(hidden_units)} learning_rate={learning_rate} ({schedule})"
    )
    spec = BenchmarkSpec(
        dataset=dataset, input_shape=tuple(input_shape), num_classes=num_classes,
        hidden_units=tuple(hidden_units), seed=seed,
        learning_rate=learning_rate_schedule(
            learning_rate, schedule, epochs * int(np.ceil(len(x) / batch_size))
        ),
    )
    memory_batch = memory_batch_size or batch_size
    rules = with_baselines(rules, spec, log)
    results = []
    for name in rules:
        build = get_rule(name)
        log(f"\n== {name}")
        keras.utils.set_random_seed(seed)
        model = build(spec)
        timer = EpochTimer()
        history = model.fit(
            x, y, batch_size=batch_size, epochs=epochs, validation_data=(xt, yt),
            callbacks=[timer], verbose=verbose,
        )
        per_epoch, steady = float(timer.steady_seconds), len(timer.seconds) > 1
        keras.utils.set_random_seed(seed)
        try:
            report = backend.train_step_memory(build(spec), x[:memory_batch], y[:memory_batch])
        except Exception as failure:  # a failed probe must not lose the training results
            log(f"{name}: memory probe failed ({type(failure).__name__}: {failure})")
            report = MemoryReport(None, f"probe failed: {failure}", keras.backend.backend())
        log(
            f"{name}: test accuracy {history.history['val_accuracy'][-1]:.4f}, "
            f"{per_epoch:.2f} s/epoch, accuracy per epoch "
            f"{[round(float(a), 4) for a in history.history['val_accuracy']]}"
        )
        results.append(
            {
                "rule": name,
                "test_accuracy": float(history.history["val_accuracy"][-1]),
                "accuracy_per_epoch": [float(a) for a in history.history["val_accuracy"]],
                "seconds_per_epoch": per_epoch,
                "seconds_exclude_compilation": steady,
                "epoch_seconds": timer.seconds,
                "memory_bytes": report.bytes,
                "memory_batch_size": memory_batch,
                "memory_description": report.description,
            }
        )
    _add_ratios(results, spec)
    log("\n" + format_table(results))
    if output_dir:
        write_outputs(results, output_dir, dataset, log)
    return results


def with_baselines(rules, spec, log=print):
    """`rules`, each preceded by its baseline (plain backprop on the same
    network) when that is not among them."""
    out = []
    for name in rules:
        base = baseline_of(name, spec)
        if base not in rules and base not in out:
            log(f"{name} is compared with {base} (backprop on the same "
                "network): running it too.")
            out.append(base)
        out.append(name)
    return out


def _add_ratios(results, spec):
    rows = {r["rule"]: r for r in results}
    for r in results:
        r["baseline"] = baseline_of(r["rule"], spec)
        base = rows.get(r["baseline"])
        r["time_ratio"] = r["seconds_per_epoch"] / base["seconds_per_epoch"] if base else None
        r["memory_ratio"] = (
            r["memory_bytes"] / base["memory_bytes"]
            if base and r["memory_bytes"] is not None and base["memory_bytes"]
            else None
        )


def format_table(results):
    fmt = lambda v, spec: "n/a" if v is None else format(v, spec)
    lines = [
        f"{'rule':<28}{'test acc':>10}{'s/epoch':>10}{'time/BP':>9}{'step mem MiB':>14}{'mem/BP':>8}",
    ]
    for r in results:
        memory = None if r["memory_bytes"] is None else r["memory_bytes"] / 2**20
        lines.append(
            f"{r['rule']:<28}{r['test_accuracy']:>10.4f}{r['seconds_per_epoch']:>10.2f}"
            f"{fmt(r['time_ratio'], '.2f'):>9}{fmt(memory, '.2f'):>14}{fmt(r['memory_ratio'], '.2f'):>8}"
        )
    others = [f"{r['rule']}: {r['baseline']}" for r in results
              if r.get("baseline", "backprop") not in ("backprop", r["rule"])]
    if others:
        lines.append("time/BP and mem/BP against backprop on the same network: "
                     + ", ".join(others))
    if results:
        lines.append(f"memory: {results[0]['memory_description']} (batch {results[0]['memory_batch_size']})")
    return "\n".join(lines)


def write_outputs(results, output_dir, dataset, log=print):
    os.makedirs(output_dir, exist_ok=True)
    stem = os.path.join(output_dir, f"benchmark_{dataset}_{keras.backend.backend()}")
    with open(stem + ".json", "w") as f:
        json.dump({"backend": keras.backend.backend(), "dataset": dataset, "results": results}, f, indent=2)
    log(f"wrote {stem}.json")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is not installed: no plot (pip install matplotlib).")
        return
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for r in results:
        epochs = range(1, len(r["accuracy_per_epoch"]) + 1)
        left.plot(epochs, r["accuracy_per_epoch"], marker="o", label=r["rule"])
    left.set(xlabel="epoch", ylabel="test accuracy", title=f"{dataset} ({keras.backend.backend()})")
    left.legend()
    names = [r["rule"] for r in results]
    memory = [0 if r["memory_bytes"] is None else r["memory_bytes"] / 2**20 for r in results]
    right.bar(names, memory)
    right.set(ylabel="train-step temporary memory (MiB)", title="memory probe")
    right.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    fig.savefig(stem + ".png", dpi=100)
    log(f"wrote {stem}.png")
