"""A NumPy Forward-Forward step for dense ReLU blocks (the reference)."""

import numpy as np


def softplus(z):
    return np.logaddexp(0.0, z)


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def rms_normalize(x, epsilon=1e-4):
    return x / (np.sqrt(np.mean(x**2, axis=1, keepdims=True)) + epsilon)


def overlay(x, labels, num_classes, scale=1.0):
    out = x.copy()
    out[:, :num_classes] = 0.0
    out[np.arange(len(x)), labels] = scale
    return out


def ff_step(weights, x, y, negatives, num_classes, threshold=2.0, scale=1.0):
    """Per-block (loss, dW, db) of one FF step with softplus loss."""
    batch = len(x)
    h = np.concatenate([overlay(x, y, num_classes, scale), overlay(x, negatives, num_classes, scale)])
    out = []
    for w, b in weights:
        inputs = rms_normalize(h)
        z = inputs @ w + b
        h = np.maximum(z, 0.0)
        g = np.mean(h**2, axis=1)
        g_pos, g_neg = g[:batch], g[batch:]
        loss = np.mean(softplus(threshold - g_pos) + softplus(g_neg - threshold))
        dg = np.concatenate([-sigmoid(threshold - g_pos), sigmoid(g_neg - threshold)]) / batch
        dz = dg[:, None] * 2.0 * h / h.shape[1] * (z > 0)
        out.append((loss, inputs.T @ dz, dz.sum(0)))
    return out


def hash_randint(seed_pair, size, maxval):
    """NumPy twin of keras_local.rules.portable_random.portable_randint."""
    m32 = 0xFFFFFFFF

    def mix(x):
        x = x & m32
        x ^= x >> 16
        x = (x * 0x045D9F3B) & m32
        x ^= x >> 15
        x = (x * 0x045D9F3B) & m32
        x ^= x >> 16
        return x

    seed = int(seed_pair[0]) & m32
    for s in seed_pair[1:]:
        seed = mix(seed * 31 + int(s))
    base = mix(seed)
    pos = np.arange(size, dtype=np.uint64)
    x = mix((pos * 0x9E3779B9 + base) & m32)
    return ((x & 0x7FFFFFFF) % maxval).astype(np.int64)
