"""Reading and rewriting Keras functional graphs (shared by the models
that split or perturb a network layer by layer)."""

import keras


def inner_graph(op):
    """The functional graph a nested model runs when called (a Functional
    model whose `call` is not overridden, or a Sequential's), else `None`."""
    if isinstance(op, keras.Sequential):
        op = getattr(op, "_functional", None)
    if not (
        isinstance(op, keras.Model)
        and hasattr(op, "_run_through_graph")
        and hasattr(op, "_standardize_inputs")
    ):
        return None
    if getattr(type(op).call, "__qualname__", "") != "Functional.call":
        return None
    return op


def _inlinable(node):
    # A nested model called with its own `training` (transfer learning's
    # `base(x, training=False)`) or `mask` stays whole: inlining would drop
    # that argument for its layers.
    return inner_graph(node.operation) is not None and not _call_options(
        node.arguments.kwargs
    )


def _call_options(kwargs):
    return {k: v for k, v in kwargs.items() if v is not None}


def inlined(graph):
    """`graph` with its nested functional models replaced by their layers.

    The result is a Functional model over the same layer objects (weights
    shared), so it can be cut between the layers of a backbone used as one
    layer (`x = keras.applications.ResNet50(include_top=False)(x)`).
    Returns `graph` itself when nothing is nested, or when inlining would
    give two layers the same name.
    """
    if not any(_inlinable(node) for node in _nodes(graph)):
        return graph
    if _has_name_clash(_operations_after_inlining(graph)):
        # A Functional model needs unique operation names (two copies of
        # one keras.applications backbone, say): keep the models whole.
        return graph
    inputs = [
        keras.Input(batch_shape=t.shape, dtype=t.dtype, name=t.name)
        for t in graph.inputs
    ]
    outputs = _run_inlined(graph, inputs[0] if len(inputs) == 1 else inputs)
    return keras.Model(inputs, outputs, name=graph.name)


def input_structure(graph):
    """`graph`'s input tensors in the structure it was built with (a dict
    keyed by name, a list), so a sub-model over them takes the same data."""
    return keras.tree.pack_sequence_as(graph._inputs_struct, graph.inputs)


def _nodes(graph):
    return [n for nodes in graph._nodes_by_depth.values() for n in nodes]


def _operations_after_inlining(graph, top_level=True):
    operations = []
    for node in _nodes(graph):
        op = node.operation
        if _inlinable(node):
            operations += _operations_after_inlining(
                inner_graph(op), top_level=False
            )
        elif top_level or not isinstance(op, keras.layers.InputLayer):
            operations.append(op)  # a nested model's inputs disappear
    return operations


def _has_name_clash(operations):
    owners = {}
    for op in operations:
        if owners.setdefault(op.name, op) is not op:
            return True
    return False


def _run_inlined(graph, inputs):
    def operation_fn(op):
        inner = inner_graph(op)
        if inner is None:
            return op

        def run(*args, **kwargs):
            if _call_options(kwargs):  # `training`/`mask`: call it whole
                return op(*args, **kwargs)
            return _run_inlined(inner, args[0])

        return run

    # In the structure the graph was built with (a list of one input, say).
    inputs = keras.tree.pack_sequence_as(
        graph._inputs_struct, keras.tree.flatten(inputs)
    )
    return graph._run_through_graph(
        graph._standardize_inputs(inputs), operation_fn=operation_fn
    )
