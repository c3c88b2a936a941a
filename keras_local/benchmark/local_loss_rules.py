"""Supervised local learning rules for the benchmark: DGL, InfoPro,
AugLocal and MAN, on a small ResNet (images) or the shared MLP (vectors)."""

import keras

from keras_local.benchmark.backprop_rules import mlp_layers
from keras_local.benchmark.registry import register_rule
from keras_local.models.local_loss_model import LocalLossModel


def resnet(input_shape, num_classes, blocks_per_stage=1, widths=(16, 32, 64),
           augment=False):
    """A CIFAR-style ResNet (3 stages, basic blocks) as a Functional model:
    `blocks_per_stage=5` gives ResNet-32 (15 blocks + stem + head).
    `augment=True` puts random flips and translations after the input."""
    inp = keras.Input(input_shape)
    x = inp
    if augment:
        x = keras.layers.RandomFlip("horizontal", seed=1)(x)
        x = keras.layers.RandomTranslation(0.125, 0.125, seed=2)(x)
    x = keras.layers.Conv2D(widths[0], 3, padding="same", use_bias=False)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU(name="stem_out")(x)
    for s, width in enumerate(widths):
        for b in range(blocks_per_stage):
            stride = 2 if (s > 0 and b == 0) else 1
            y = keras.layers.Conv2D(
                width, 3, strides=stride, padding="same", use_bias=False
            )(x)
            y = keras.layers.BatchNormalization()(y)
            y = keras.layers.ReLU()(y)
            y = keras.layers.Conv2D(width, 3, padding="same", use_bias=False)(y)
            y = keras.layers.BatchNormalization()(y)
            shortcut = x
            if stride != 1 or x.shape[-1] != width:
                shortcut = keras.layers.Conv2D(
                    width, 1, strides=stride, use_bias=False
                )(x)
            x = keras.layers.Add()([shortcut, y])
            x = keras.layers.ReLU(name=f"s{s}b{b}_out")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(num_classes)(x)
    return keras.Model(inp, out)


def network(spec):
    if len(spec.input_shape) == 3:
        return resnet(spec.input_shape, spec.num_classes)
    return keras.Sequential(
        [keras.Input(spec.input_shape)]
        + ([keras.layers.Flatten()] if len(spec.input_shape) > 1 else [])
        + mlp_layers(spec)
        + [keras.layers.Dense(spec.num_classes)]
    )


def _build(spec, auxiliary, num_modules=4):
    net = network(spec)
    legal = len(LocalLossModel.split_points_of(net))
    model = LocalLossModel(
        net, num_modules=min(num_modules, legal + 1), auxiliary=auxiliary,
        seed=spec.seed,
    )
    model.compile(
        optimizer=keras.optimizers.Adam(spec.learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        jit_compile=spec.jit_compile,
    )
    return model


@register_rule("dgl")
def build_dgl(spec):
    return _build(spec, "dgl")


@register_rule("infopro")
def build_infopro(spec):
    return _build(spec, "infopro")


@register_rule("auglocal")
def build_auglocal(spec):
    return _build(spec, "auglocal")


@register_rule("man")
def build_man(spec):
    return _build(spec, "man")
