"""`global_clipnorm` clips each separately trained part of a rule by its
own norm: one norm over all blocks would let the other blocks' gradients
scale a block's step, which breaks locality."""

import keras
import numpy as np
import pytest

from tests.small_models import BLOCK_RULES, rule_model

LR = 0.1


def _data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(16, 6)).astype("float32"), rng.integers(0, 3, 16)


def _model(rule, optimizer, scale_last_group=None):
    model, loss = rule_model(rule)
    model.compile(optimizer=optimizer, loss=loss)
    model.build((None, 6))
    if scale_last_group is not None:
        for i in model._gradient_group_indices()[-1]:
            variable = model.trainable_variables[i]
            variable.assign(variable * scale_last_group)
    return model


def _update(model):
    before = [keras.ops.convert_to_numpy(v) for v in model.trainable_variables]
    model.train_on_batch(*_data())
    after = [keras.ops.convert_to_numpy(v) for v in model.trainable_variables]
    return [a - b for a, b in zip(after, before)]


def _norm(arrays):
    return float(np.sqrt(sum(np.sum(np.square(a, dtype="float64")) for a in arrays)))


@pytest.mark.parametrize("rule", BLOCK_RULES)
def test_global_clipnorm_clips_each_block_by_its_own_norm(rule):
    plain = _model(rule, keras.optimizers.SGD(LR))
    groups = plain._gradient_group_indices()
    # The groups partition the trainable variables, one per block/module.
    assert sorted(i for g in groups for i in g) == list(range(len(plain.trainable_variables)))
    assert len(groups) >= 2
    unclipped = _update(plain)
    group_norms = [_norm([unclipped[i] for i in g]) / LR for g in groups]
    assert min(group_norms) > 0
    clipnorm = 0.5 * min(group_norms)

    clipped = _update(_model(rule, keras.optimizers.SGD(LR, global_clipnorm=clipnorm)))
    for g, norm in zip(groups, group_norms):
        for i in g:
            np.testing.assert_allclose(
                clipped[i], unclipped[i] * clipnorm / norm, rtol=1e-4, atol=1e-7
            )
        # Each block's step has the full clip norm; one joint norm would
        # have given each block a smaller share of it.
        np.testing.assert_allclose(_norm([clipped[i] for i in g]), LR * clipnorm, rtol=1e-4)


@pytest.mark.parametrize("rule", [r for r in BLOCK_RULES if r != "direct_feedback_alignment"])
def test_clipped_update_of_the_first_block_ignores_the_later_blocks(rule):
    # Locality under clipping: tripling the last block's weights changes
    # its gradient, not the first block's clipped step. (DFA is left out:
    # its first block learns from the output error, which the last block
    # changes by design.)
    clip = lambda: keras.optimizers.SGD(LR, global_clipnorm=1e-3)
    reference = _model(rule, clip())
    first = reference._gradient_group_indices()[0]
    a = _update(reference)
    b = _update(_model(rule, clip(), scale_last_group=3.0))
    for i in first:
        np.testing.assert_allclose(b[i], a[i], rtol=1e-5, atol=1e-9)
    assert _norm([a[i] for i in first]) > 0


def test_one_group_rule_clips_like_keras():
    # Zeroth-order training has one estimate for the whole model: Keras's
    # own joint clipping.
    unclipped = _update(_model("zeroth_order", keras.optimizers.SGD(LR)))
    norm = _norm(unclipped) / LR
    clipped = _update(_model("zeroth_order", keras.optimizers.SGD(LR, global_clipnorm=0.5 * norm)))
    for a, b in zip(unclipped, clipped):
        np.testing.assert_allclose(b, 0.5 * a, rtol=1e-4, atol=1e-7)


def test_loss_scale_optimizer_clips_the_true_gradients_by_block():
    inner = lambda: keras.optimizers.SGD(LR, global_clipnorm=1e-3)
    plain = _update(_model("drtp", inner()))
    scaled = _update(_model("drtp", keras.optimizers.LossScaleOptimizer(inner())))
    for a, b in zip(plain, scaled):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-9)


def test_global_clipnorm_with_gradient_accumulation_is_refused():
    optimizer = keras.optimizers.SGD(LR, global_clipnorm=1.0, gradient_accumulation_steps=2)
    model = _model("drtp", optimizer)
    with pytest.raises(ValueError, match=r"Received: an optimizer with global_clipnorm=1.0 and gradient_accumulation_steps=2"):
        model.train_on_batch(*_data())
    # Accumulation alone, or per-variable clipping with it, still trains.
    _update(_model("drtp", keras.optimizers.SGD(LR, gradient_accumulation_steps=2)))
    _update(_model("drtp", keras.optimizers.SGD(LR, clipnorm=1.0, gradient_accumulation_steps=2)))
