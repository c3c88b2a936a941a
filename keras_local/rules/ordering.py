"""Ordering a compiled step without changing its values."""

from keras import ops
from keras import tree


def after(value, *dependencies):
    """`value` (a tensor or a structure of them), unchanged, but made to
    depend on `dependencies`.

    Adds an exact zero built from the first element of each dependency, so
    a compiler cannot run `value`'s consumers before the dependencies exist.
    Rules use it to order a step block by block (the next block's forward
    pass waits for this block's gradients, so this block's activations can
    be freed first, instead of every forward pass being scheduled up front
    as in backprop) and to keep regenerated random draws from being merged
    into one stored copy.
    """
    leaves = [d for d in tree.flatten(dependencies) if d is not None]
    if not leaves:
        return value
    zero = ops.convert_to_tensor(0.0, dtype="float32")
    for leaf in leaves:
        first = ops.cast(ops.reshape(leaf, (-1,))[0], "float32")
        # min(|a|, 0) is exactly 0 for every finite or infinite a.
        zero = zero + ops.minimum(ops.abs(first), 0.0)
    return tree.map_structure(
        lambda v: v + ops.cast(zero, ops.convert_to_tensor(v).dtype), value
    )
