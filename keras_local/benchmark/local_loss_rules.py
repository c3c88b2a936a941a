"""Supervised local learning rules for the benchmark: DGL, InfoPro,
AugLocal and MAN, on a small ResNet (images) or the shared MLP (vectors)."""

import keras

from keras_local.benchmark.registry import register_rule
from keras_local.benchmark.rule_building import compile_rule
from keras_local.benchmark.rule_building import mlp_layers
from keras_local.models.local_loss_model import LocalLossModel


class RematBlock(keras.layers.Layer):
    """Runs a sub-model under `keras.remat` (gradient checkpointing): only
    its input is kept for the backward pass, its activations are
    recomputed. The sub-model runs through `stateless_call`, so BatchNorm's
    moving statistics leave the checkpointed function as outputs (assigning
    variables inside it would leak traced values)."""

    def __init__(self, block, **kwargs):
        super().__init__(**kwargs)
        self.block = block

    def build(self, input_shape):
        if not self.block.built:
            self.block.build(input_shape)
        self.built = True

    def call(self, x, training=False):
        trainable = [v.value for v in self.block.trainable_variables]
        non_trainable = [v.value for v in self.block.non_trainable_variables]

        def run(trainable, non_trainable, x):
            return self.block.stateless_call(
                trainable, non_trainable, x, training=bool(training)
            )

        out, new_non_trainable = keras.remat(run)(trainable, non_trainable, x)
        if training:
            for v, value in zip(
                self.block.non_trainable_variables, new_non_trainable
            ):
                v.assign(value)
        return out

    def compute_output_shape(self, input_shape):
        return self.block.compute_output_shape(input_shape)


def _basic_block(x, width, stride, name):
    y = keras.layers.Conv2D(
        width, 3, strides=stride, padding="same", use_bias=False,
        name=f"{name}_conv1",
    )(x)
    y = keras.layers.BatchNormalization(name=f"{name}_bn1")(y)
    y = keras.layers.ReLU(name=f"{name}_relu1")(y)
    y = keras.layers.Conv2D(
        width, 3, padding="same", use_bias=False, name=f"{name}_conv2"
    )(y)
    y = keras.layers.BatchNormalization(name=f"{name}_bn2")(y)
    shortcut = x
    if stride != 1 or x.shape[-1] != width:
        shortcut = keras.layers.Conv2D(
            width, 1, strides=stride, use_bias=False, name=f"{name}_shortcut"
        )(x)
    x = keras.layers.Add(name=f"{name}_add")([shortcut, y])
    return keras.layers.ReLU(name=f"{name}_out")(x)


def resnet(input_shape, num_classes, blocks_per_stage=1, widths=(16, 32, 64),
           augment=False, remat=False):
    """A CIFAR-style ResNet (3 stages of basic blocks, BatchNorm) as a
    Functional model: `blocks_per_stage=5` gives ResNet-32 (15 blocks +
    stem + head), 18 gives ResNet-110. Block outputs are named
    `s{stage}b{block}_out`, the stem's `stem_out`.

    `augment=True` puts the standard CIFAR augmentation after the input
    (random 4-pixel translation, i.e. a random crop of the 4-padded image
    with zero padding, and a random horizontal flip); it only acts in
    training. `remat=True` wraps the stem and every residual block in a
    `RematBlock` (gradient checkpointing at block boundaries), the fair
    memory baseline for local learning."""
    inp = keras.Input(input_shape)
    x = inp
    if augment:
        shift = 4.0 / input_shape[0]
        x = keras.layers.RandomTranslation(
            shift, shift, fill_mode="constant", interpolation="nearest",
            seed=2, name="random_crop",
        )(x)
        x = keras.layers.RandomFlip("horizontal", seed=1, name="random_flip")(x)

    def unit(x, fn, name):
        if not remat:
            return fn(x)
        sub_in = keras.Input(tuple(x.shape[1:]))
        sub = keras.Model(sub_in, fn(sub_in), name=f"{name}_block")
        return RematBlock(sub, name=name)(x)

    def stem(x):
        x = keras.layers.Conv2D(
            widths[0], 3, padding="same", use_bias=False, name="stem_conv"
        )(x)
        x = keras.layers.BatchNormalization(name="stem_bn")(x)
        return keras.layers.ReLU(name="stem_out")(x)

    x = unit(x, stem, "stem_remat")
    for s, width in enumerate(widths):
        for b in range(blocks_per_stage):
            stride = 2 if (s > 0 and b == 0) else 1
            name = f"s{s}b{b}"
            x = unit(
                x,
                lambda x, w=width, st=stride, n=name: _basic_block(x, w, st, n),
                name + "_remat",
            )
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    out = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inp, out)


# Module boundaries of InfoPro's ResNet-32 splits (Wang et al. 2021, the
# configs of their CIFAR code): (stage, block) after which a module ends,
# stage 0 being the stem, stages 1-3 the residual stages.
_INFOPRO_RESNET32 = {
    2: [(2, 1)],
    3: [(1, 4), (2, 4)],
    4: [(1, 2), (2, 1), (3, 0)],
    8: [(1, 0), (1, 2), (1, 4), (2, 1), (2, 3), (3, 0), (3, 2)],
    16: [(0, 0)] + [(s, b) for s in (1, 2) for b in range(5)]
    + [(3, b) for b in range(4)],
}


def infopro_cuts(blocks_per_stage, num_modules):
    """InfoPro's split of a ResNet-32 (`resnet(..., blocks_per_stage=5)`)
    into `num_modules` modules, as cut layer names; `None` where InfoPro
    gives none (other depths or K: split by balance instead)."""
    if blocks_per_stage != 5 or num_modules not in _INFOPRO_RESNET32:
        return None
    return [
        "stem_out" if stage == 0 else f"s{stage - 1}b{block}_out"
        for stage, block in _INFOPRO_RESNET32[num_modules]
    ]


def network(spec):
    if len(spec.input_shape) == 3:
        return resnet(spec.input_shape, spec.num_classes)
    return keras.Sequential(
        [keras.Input(spec.input_shape)]
        + ([keras.layers.Flatten()] if len(spec.input_shape) > 1 else [])
        + mlp_layers(spec)
        + [keras.layers.Dense(spec.num_classes)]
    )


def _baseline(spec):
    return "backprop_resnet" if len(spec.input_shape) == 3 else "backprop"


@register_rule("backprop_resnet", baseline="backprop_resnet")
def build_backprop_resnet(spec):
    """Plain backprop on the ResNet the local-learning rules split (image
    data): their baseline there."""
    if len(spec.input_shape) != 3:
        raise ValueError(
            "`backprop_resnet` trains the local-learning rules' ResNet, "
            "which takes images (height, width, channels). Received: "
            f"input_shape={spec.input_shape} (data set {spec.dataset!r}); "
            "use `backprop` for vectors."
        )
    return compile_rule(network(spec), spec)


def _build(spec, auxiliary, num_modules=4):
    net = network(spec)
    legal = len(LocalLossModel.split_points_of(net))
    model = LocalLossModel(
        net, num_modules=min(num_modules, legal + 1), auxiliary=auxiliary,
        seed=spec.seed,
    )
    return compile_rule(model, spec)


@register_rule("dgl", baseline=_baseline)
def build_dgl(spec):
    return _build(spec, "dgl")


@register_rule("infopro", baseline=_baseline)
def build_infopro(spec):
    return _build(spec, "infopro")


@register_rule("auglocal", baseline=_baseline)
def build_auglocal(spec):
    return _build(spec, "auglocal")


@register_rule("man", baseline=_baseline)
def build_man(spec):
    return _build(spec, "man")
