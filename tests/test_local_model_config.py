"""A user's own rule that takes layers as arguments saves and loads through
`LocalModel.serialized_arguments`, with nothing but its own arguments in
its `get_config`."""

import keras
import numpy as np

import keras_local
from tests.conftest import to_numpy


@keras.saving.register_keras_serializable(package="test_local_model_config")
class LayerArgumentsRule(keras_local.LocalModel):
    serialized_arguments = ("blocks", "head", "mode")

    def __init__(self, blocks, head, mode="sum", scale=1.0, **kwargs):
        super().__init__(**kwargs)
        self.blocks, self.head, self.mode, self.scale = blocks, head, mode, scale

    def call(self, x):
        for block in self.blocks:
            x = block(x)
        return self.head(x) * self.scale

    def local_grads(self, tv, ntv, x, y, sample_weight):  # never trained here
        raise NotImplementedError

    def get_config(self):
        config = super().get_config()
        config.update(scale=self.scale)
        return config


def _rule():
    keras.utils.set_random_seed(0)
    model = LayerArgumentsRule(
        [keras.layers.Dense(5, activation="tanh"), keras.layers.Dense(4)],
        keras.layers.Dense(3, name="head"), mode="mean", scale=2.0, seed=3,
    )
    model(np.zeros((2, 6), "float32"))
    return model


def test_config_serialises_and_rebuilds_layer_arguments():
    model = _rule()
    config = model.get_config()
    assert [block["class_name"] for block in config["blocks"]] == ["Dense", "Dense"]
    assert config["head"]["config"]["name"] == "head"
    assert (config["mode"], config["scale"], config["seed"]) == ("mean", 2.0, 3)

    clone = LayerArgumentsRule.from_config(config)
    assert [type(b) for b in clone.blocks] == [keras.layers.Dense] * 2
    assert [b.units for b in clone.blocks] == [5, 4]
    assert clone.blocks[0].activation is keras.activations.tanh
    assert (clone.head.name, clone.mode, clone.scale, clone.seed) == ("head", "mean", 2.0, 3)
    assert clone.get_config() == config


def test_saved_rule_with_layer_arguments_loads_with_its_weights(tmp_path):
    model = _rule()
    x = np.random.default_rng(0).normal(size=(4, 6)).astype("float32")
    path = str(tmp_path / "rule.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, LayerArgumentsRule)
    np.testing.assert_allclose(to_numpy(loaded(x)), to_numpy(model(x)), rtol=1e-6, atol=1e-6)
