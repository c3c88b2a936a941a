"""The rules `keras-local benchmark --rules ...` knows.

A rule is a function `build(spec: BenchmarkSpec) -> keras.Model` that
returns a compiled model (compiled with `metrics=["accuracy"]`) ready for
`fit(x, y)` on the spec's data. Families register theirs in their own module
under `keras_local/benchmark/`, listed in `FAMILY_MODULES`.
"""

import importlib

RULES = {}
# Each rule's baseline: the rule that trains the same network by plain
# backprop, the denominator of its time and memory ratios. A name, or a
# function of the `BenchmarkSpec` giving one.
BASELINES = {}

FAMILY_MODULES = (
    "keras_local.benchmark.backprop_rules",
    "keras_local.benchmark.forward_forward_rules",
    "keras_local.benchmark.local_loss_rules",
    "keras_local.benchmark.zeroth_order_rules",
    "keras_local.benchmark.target_projection_rules",
    "keras_local.benchmark.forward_forward_family_rules",
    "keras_local.benchmark.forward_gnn_rules",
)


def register_rule(name, baseline="backprop"):
    """Registers `build` as rule `name`, compared with rule `baseline`
    (plain backprop on the same network; a name or `fn(spec) -> name`)."""
    def decorator(build):
        RULES[name] = build
        BASELINES[name] = baseline
        return build

    return decorator


def baseline_of(name, spec):
    """The rule whose model is `name`'s network trained by plain backprop."""
    get_rule(name)
    baseline = BASELINES.get(name, "backprop")
    return baseline(spec) if callable(baseline) else baseline


def available_rules():
    for module in FAMILY_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as error:
            if error.name != module:
                raise
    return dict(RULES)


def get_rule(name):
    rules = available_rules()
    if name not in rules:
        raise ValueError(
            f"Unknown benchmark rule. Expected one of {sorted(rules)}. "
            f"Received: {name!r}"
        )
    return rules[name]
