import keras
import numpy as np
from keras import ops

from keras_local import backend
from keras_local.api_export import keras_local_export
from keras_local.models.functional_graph import inner_graph
from keras_local.models.local_model import LocalModel
from keras_local.models.local_model import regularized_parts
from keras_local.models.local_model import sum_losses
from keras_local.rules import zeroth_order as zo
from keras_local.rules.labels import check_choice
from keras_local.rules.precision import loss_dtype


@keras_local_export
class ZerothOrderModel(LocalModel):
    """Zeroth-order (MeZO, ZO-Bench) and forward-gradient training of any
    Keras model.

    Wraps a Keras model (Sequential, Functional, subclassed, keras-hub) and
    trains its trainable weights from forward passes alone: each step draws
    one seed, and for each of `num_queries` random directions `z` measures
    the loss at `theta + epsilon z` and `theta - epsilon z` (SPSA), giving
    one scalar projected gradient `pg = (f+ - f-) / (2 epsilon)` and the
    estimate `g = pg z`; or takes one forward-mode `jvp` along `z`
    (`estimator="forward_gradient"`, `g = (grad f . z) z`, the derivative
    of `f(theta + t z)` in the scalar `t`, so `z` is drawn inside the
    forward pass as for SPSA and is never a `jvp` input). `z` is never
    stored: it is regenerated from the seed, variable by variable, for
    `+epsilon`, `-epsilon` and the update (MeZO's memory trick). `g` goes to
    the compiled optimizer: `SGD` gives ZO-SGD, `SGD(momentum=...)`
    ZO-SGD-MMT, `Adam` ZO-Adam. With plain `SGD`, `num_queries=1` and no
    `sign`/sparsity the update `theta - lr pg z` is elementwise in the
    regenerated `z`, so under XLA it fuses into the weight update and no
    gradient-sized tensor is materialised. On a functional or Sequential
    model (nested ones included) each layer is perturbed just before it
    runs, and a `Dense` kernel of more than 2**20 entries one block of
    columns at a time, so the step needs about inference memory plus one
    perturbed block. Every forward pass of a step sees the same dropout
    masks; with `query_training=False` the passes run in inference mode
    instead, as in the MeZO reference (dropout off, BatchNorm on its moving
    statistics, which training then leaves unchanged).

    Since the model is never differentiated (except the `first_order_layers`
    of hybrid training), the compiled loss need not be differentiable (e.g.
    a 0-1 error) and layers without a gradient (rounding, `argmax`, integer
    codes) are trained through. Variables with `trainable=False` are never
    perturbed nor updated, and neither are weights the model's outputs do
    not depend on (read from the functional graph, through nested models:
    e.g. a keras-hub backbone's pooler when the task reads the sequence
    output), which first-order training would give no gradient.

    Weight regularisers (`kernel_regularizer`, ...) are not estimated: their
    exact gradient, a function of the weights alone, is added to the
    estimate (as MeZO applies weight decay), so the update has no extra
    noise; it costs a weight-sized temporary per regularised weight. An
    activity regulariser depends on the activations and would need the
    loss queries to include it: it raises a `ValueError`.

    Logs `loss` (at the unperturbed weights when it is computed, i.e. with
    `one_sided`, `conservative` or `first_order_layers`; otherwise the mean
    of `f+` and `f-`, equal to it up to O(epsilon^2)) and
    `projected_gradient`, the mean `|pg|` over the queries; with
    `conservative=True` also `step_kept`, the fraction of steps kept.
    Compiled metrics see the predictions of the first forward pass of the
    step.

    Args:
        model: the Keras model to train.
        estimator: `"spsa"` or `"forward_gradient"`. Defaults to `"spsa"`.
        epsilon: float > 0, the SPSA perturbation scale. Defaults to `1e-3`.
        num_queries: int >= 1, random directions averaged per step.
            Defaults to `1`.
        one_sided: bool, SPSA with `(f(theta + eps z) - f(theta)) / eps`.
            Defaults to `False`.
        distribution: `"gaussian"` or `"rademacher"` directions. Defaults
            to `"gaussian"`.
        generator: `"portable"`, directions hashed from (seed, position)
            with `keras.ops`: identical on every backend and, under XLA,
            fused into their consumers so no direction is ever stored; or
            `"backend"`, the backend's own generator
            (`keras_local.backend.random_normal`). Defaults to
            `"portable"`.
        sign: bool, feed `sign(g)` to the optimizer (ZO-SGD-Sign). Defaults
            to `False`.
        conservative: bool, ZO-SGD-Cons: the step is kept only if the loss
            at `theta - lr g` (lr: the compiled optimizer's learning rate at
            this step, as a schedule or a callback sets it; exact for plain
            `SGD`) is not above the loss at `theta`.
            Defaults to `False`.
        block_wise: bool, perturb one block per step, cycling through the
            blocks (a block is a layer of `model` that owns trainable
            weights). Defaults to `False`.
        first_order_layers: list of layers of `model` (or their names)
            trained with true (backprop) gradients, the rest zeroth-order
            (ZO-Bench's hybrid). Defaults to `None`.
        sparsity: float in [0, 1), fraction of each weight left unperturbed.
            Defaults to `0.0`.
        sparsity_mode: `"random"` (a random mask, resampled every
            `sparsity_resample_every` steps) or `"magnitude"` (only the
            smallest-magnitude `1 - sparsity` entries are perturbed,
            recomputed each step). Defaults to `"random"`.
        sparsity_resample_every: int >= 1. Defaults to `1`.
        query_training: bool, the `training` flag of the loss queries (the
            forward passes at perturbed weights, and the first-order pass of
            `first_order_layers`). `False` evaluates the loss of the model
            as it predicts (MeZO's reference runs its queries in `eval`
            mode): no dropout noise in the estimate, BatchNorm statistics
            neither used nor updated. Defaults to `True`.
        seed: int or `None`, seeds the directions. Defaults to `None`.
        **kwargs: passed to `keras.Model`.

    Returns:
        A `keras.Model` whose `predict` is the wrapped model's.

    Example:

    ```python
    x = np.random.default_rng(0).normal(size=(1000, 20)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    net = keras.Sequential([keras.Input((20,)), keras.layers.Dense(2)])
    model = keras_local.ZerothOrderModel(net, epsilon=1e-3, seed=0)
    model.compile(optimizer=keras.optimizers.SGD(1e-2),
                  loss=keras.losses.SparseCategoricalCrossentropy(
                      from_logits=True),
                  metrics=["accuracy"])
    model.fit(x, y, batch_size=32, epochs=5)
    ```

    References:
        - Spall, "Multivariate stochastic approximation using a simultaneous
          perturbation gradient approximation", 1992.
        - Malladi et al., "Fine-Tuning Language Models with Just Forward
          Passes" (MeZO), 2023.
        - Zhang et al., "Revisiting Zeroth-Order Optimization for
          Memory-Efficient LLM Fine-Tuning: A Benchmark" (ZO-Bench), 2024.
        - Baydin et al., "Gradients without Backpropagation", 2022.
    """

    serialized_arguments = ("model",)

    def __init__(
        self,
        model,
        estimator="spsa",
        epsilon=1e-3,
        num_queries=1,
        one_sided=False,
        distribution="gaussian",
        generator="portable",
        sign=False,
        conservative=False,
        block_wise=False,
        first_order_layers=None,
        sparsity=0.0,
        sparsity_mode="random",
        sparsity_resample_every=1,
        query_training=True,
        seed=None,
        **kwargs,
    ):
        super().__init__(seed=seed, **kwargs)
        if not isinstance(model, keras.layers.Layer):
            raise TypeError(
                "`model` must be a Keras model or layer. Received: "
                f"model={model!r} of type {type(model).__name__}"
            )
        check_choice("estimator", estimator, zo.ESTIMATORS)
        check_choice("distribution", distribution, zo.DISTRIBUTIONS)
        check_choice("generator", generator, zo.GENERATORS)
        check_choice("sparsity_mode", sparsity_mode, zo.SPARSITY_MODES)
        if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)):
            raise ValueError(
                "`epsilon` must be a float > 0. Received: "
                f"epsilon={epsilon!r}"
            )
        zo._check_epsilon(epsilon)
        if isinstance(num_queries, np.integer):
            num_queries = int(num_queries)
        zo._check_num_queries(num_queries)
        if not 0.0 <= float(sparsity) < 1.0:
            raise ValueError(
                "`sparsity` must be in [0, 1) (the fraction left "
                f"unperturbed). Received: sparsity={sparsity!r}"
            )
        if (
            not isinstance(sparsity_resample_every, (int, np.integer))
            or sparsity_resample_every < 1
        ):
            raise ValueError(
                "`sparsity_resample_every` must be an int >= 1. Received: "
                f"sparsity_resample_every={sparsity_resample_every!r}"
            )
        if not isinstance(query_training, (bool, np.bool_)):
            raise TypeError(
                "`query_training` must be a bool (the `training` flag of "
                "the loss queries). Received: "
                f"query_training={query_training!r}"
            )
        if one_sided and estimator != "spsa":
            raise ValueError(
                "`one_sided=True` applies to `estimator='spsa'` only. "
                f"Received: estimator={estimator!r}, one_sided=True"
            )
        self.model = model
        self.estimator = estimator
        self.epsilon = float(epsilon)
        self.num_queries = int(num_queries)
        self.one_sided = bool(one_sided)
        self.distribution = distribution
        self.generator = generator
        self.sign = bool(sign)
        self.conservative = bool(conservative)
        self.block_wise = bool(block_wise)
        self.first_order_layers = (
            None if first_order_layers is None else list(first_order_layers)
        )
        self.sparsity = float(sparsity)
        self.sparsity_mode = sparsity_mode
        self.sparsity_resample_every = int(sparsity_resample_every)
        self.query_training = bool(query_training)
        self.zo_step = self.add_weight(
            shape=(), dtype="int32", initializer="zeros", trainable=False,
            name="zo_step",
        )
        self.mask_seed = self.add_weight(
            shape=(2,), dtype="int32", initializer="zeros", trainable=False,
            name="mask_seed",
        )

    # ------------------------------------------------------------------ #
    def build(self, input_shape):
        if not self.model.built:
            # A symbolic call, as `fit` builds a model: it also builds the
            # layers a subclassed model creates in `__init__` and uses in
            # `call`, which `Model.build` alone leaves unbuilt.
            self.model(keras.tree.map_shape_structure(keras.KerasTensor, input_shape))
        self._resolve_layers()
        self.built = True

    def call(self, inputs, training=False):
        return self.model(inputs, training=training)

    def compute_output_shape(self, input_shape):
        return self.model.compute_output_shape(input_shape)

    def _resolve_layers(self):
        if not self.trainable_variables:
            raise ValueError(
                "ZerothOrderModel found no trainable weights in the wrapped "
                f"model {self.model.name!r}. Received: a model whose "
                "weights are all frozen (`trainable=False`) or that has no "
                "weights. Unfreeze at least one layer."
            )
        fo = []
        for layer in self.first_order_layers or []:
            if isinstance(layer, str):
                try:
                    layer = self.model.get_layer(layer)
                except ValueError:
                    raise ValueError(
                        "`first_order_layers` names a layer that the wrapped "
                        f"model does not have. Received: {layer!r}. Layers: "
                        f"{[l.name for l in self.model.layers]}"
                    ) from None
            fo += self.variable_indices(layer)
        self._fo_idx = sorted(set(fo))
        # Weights the outputs do not depend on (e.g. a backbone's pooler
        # when the task reads its sequence output) get no gradient; a
        # perturbation would only add noise to them, so none is drawn.
        reaching = self._weights_reaching_outputs()
        self._zo_idx = [
            i for i in range(len(self.trainable_variables))
            if i not in set(self._fo_idx) and i in reaching
        ]
        if not self._zo_idx and not self.first_order_layers:
            raise ValueError(
                "None of the wrapped model's trainable weights reaches its "
                "outputs, so a loss cannot depend on them. Received: "
                f"model {self.model.name!r} whose trainable weights all sit "
                "in unused outputs of nested models."
            )
        if not self._zo_idx and self.first_order_layers:
            raise ValueError(
                "Every trainable weight is in `first_order_layers`; nothing "
                "is left to zeroth-order training. Received: "
                f"first_order_layers={self.first_order_layers!r}"
            )
        # Blocks: the wrapped model's layers that own trainable weights.
        block_of = {}
        layers = getattr(self.model, "layers", None) or [self.model]
        for b, layer in enumerate(layers):
            for i in self.variable_indices(layer):
                block_of.setdefault(i, b)
        rest = [i for i in self._zo_idx if i not in block_of]
        for i in rest:
            block_of[i] = len(layers)
        used = sorted({block_of[i] for i in self._zo_idx})
        renumber = {b: k for k, b in enumerate(used)}
        self._block_of = {i: renumber[block_of[i]] for i in self._zo_idx}
        self.num_blocks = len(used)
        self.__dict__["_resolved_for"] = self._trainable_key()
        self.__dict__.pop("_graph_cache", None)  # it checks `_zo_idx`

    def _check_resolved(self):
        # The positions above index `trainable_variables`: a layer frozen
        # or unfrozen since (then `compile` again, as Keras asks) moves them.
        if self.__dict__.get("_resolved_for") != self._trainable_key():
            self._resolve_layers()

    def _weights_reaching_outputs(self):
        """Positions of the trainable weights the wrapped model's outputs
        depend on: read from its functional graph (through nested
        functional models); every weight for other models."""
        everything = set(range(len(self.trainable_variables)))
        graph = inner_graph(self.model)
        if graph is None:
            return everything
        reaching = set()
        for op in _operations_reaching(graph):
            if isinstance(op, keras.layers.Layer):
                reaching.update(self.variable_indices(op))
        return reaching

    # ------------------------------------------------------------------ #
    @property
    def zo_variable_indices(self):
        """Positions (in `trainable_variables`) of the zeroth-order
        weights."""
        self._check_resolved()
        return list(self._zo_idx)

    adds_regularization_losses = True

    def _check_regularizers(self):
        found = regularized_parts(self, weights=False)
        if found:
            raise ValueError(
                "ZerothOrderModel does not include activity regularisers in "
                f"its loss queries, so these would be ignored: {found}. "
                "Received: a model with activity regularisers. Remove them "
                "(weight regularisers are supported)."
            )
        self._regularizers_checked = True

    def _regularization(self, tv):
        """`(value, indices, grads)`: the weight regularisers of the weights
        this rule updates, and their exact gradients (`None`, [], [] when
        there are none)."""
        indices = [
            i for i in sorted(set(self._zo_idx) | set(self._fo_idx))
            if self.trainable_variables[i].regularizer is not None
        ]
        if not indices:
            return None, [], []
        regularizers = [self.trainable_variables[i].regularizer for i in indices]

        def total(params):
            return sum_losses([r(p) for r, p in zip(regularizers, params)])

        value, grads = backend.value_and_grad(total)(self.gather(tv, indices))
        return value, indices, list(grads)

    def local_log_names(self):
        names = ["projected_gradient"]
        if self.conservative:
            names.append("step_kept")
        return names

    @property
    def reads_learning_rate(self):
        # ZO-SGD-Cons tries the step at the optimizer's current rate.
        return self.conservative

    def _index(self, variable):
        return [id(v) for v in self.non_trainable_variables].index(id(variable))

    def _scales(self, tv, ntv):
        """Per trainable weight: `None` (not perturbed), `1` or a mask."""
        self._check_resolved()
        scales = [None] * len(tv)
        step = ntv[self._index(self.zo_step)]
        active = ops.mod(step, self.num_blocks) if self.block_wise else None
        mask_seed = ntv[self._index(self.mask_seed)]
        for i in self._zo_idx:
            scale = ops.convert_to_tensor(1.0, tv[i].dtype)
            if self.block_wise:
                scale = ops.cast(ops.equal(active, self._block_of[i]), tv[i].dtype)
            if self.sparsity > 0:
                if self.sparsity_mode == "random":
                    mask = zo.random_mask(
                        tv[i].shape, zo.direction_seed(mask_seed, 0, i),
                        self.sparsity, tv[i].dtype,
                    )
                else:
                    mask = zo.magnitude_mask(tv[i], self.sparsity)
                scale = scale * mask
            scales[i] = scale if (self.block_wise or self.sparsity > 0) else None
        return scales

    def perturbation(self, trainable_values, non_trainable_values, query=0):
        """The direction `z` of query `query` at the current step, as the
        step regenerates it (zeros for weights that are not perturbed). For
        inspection and tests; training never stores it."""
        if not self.built:
            raise ValueError(
                "`perturbation()` needs a built model. Received: an unbuilt "
                "ZerothOrderModel; call `model.build(input_shape)` first."
            )
        tv, ntv = list(trainable_values), list(non_trainable_values)
        seed = self.step_seed(ntv)
        scales = self._scales(tv, ntv)
        out = []
        for i, v in enumerate(tv):
            if i not in self._block_of:
                out.append(ops.zeros_like(v))
                continue
            z = zo.direction(
                v.shape, zo.direction_seed(seed, query, i), self.distribution,
                v.dtype, self.generator,
            )
            out.append(z if scales[i] is None else z * scales[i])
        return out

    # ------------------------------------------------------------------ #
    def _forward(self, tv, ntv, x, y, sample_weight):
        self._rewind_random_state()
        y_pred, new_ntv = self.stateless_call(
            tv, ntv, x, training=self.query_training
        )
        loss = self.compiled_loss(y, y_pred, sample_weight)
        return ops.cast(loss, loss_dtype()), y_pred, new_ntv

    def _graph(self):
        """The wrapped model's functional graph, if every zeroth-order
        weight belongs to one of its layers (else `None`)."""
        cache = self.__dict__.get("_graph_cache")
        if cache is not None:
            return cache[0]
        graph = self.model
        if isinstance(graph, keras.Sequential):
            graph = getattr(graph, "_functional", None)
        ok = (
            isinstance(graph, keras.Model)
            and hasattr(graph, "_run_through_graph")
            and hasattr(graph, "_nodes_by_depth")
        )
        if ok:
            covered = set()
            for op in graph.operations:
                if isinstance(op, keras.layers.Layer):
                    covered.update(self.variable_indices(op))
            ok = set(self._zo_idx) <= covered
        self.__dict__["_graph_cache"] = (graph if ok else None,)
        return graph if ok else None

    def _perturbed_forward(self, tv, ntv, x, y, sample_weight, seeds, scales,
                           epsilon):
        """The loss at `tv + epsilon * z`.

        On a functional (or Sequential) model each layer's weights are
        perturbed inside the forward pass, just before the layer runs, and
        the draw is tied to the layer's input: under XLA only one layer's
        perturbed weights exist at a time (inference memory plus one
        layer). Nested functional models (e.g. a keras-hub backbone inside
        a task model) are run layer by layer the same way. Other models are
        perturbed as a whole. Every pass starts from the step's layer state
        (dropout seeds; on torch also the global generator), so +eps and
        -eps see the same dropout masks.
        """
        graph = self._graph()
        if graph is None:
            return self._forward(
                zo.perturb(tv, seeds, scales, epsilon, self.distribution,
                           self.generator),
                ntv, x, y, sample_weight,
            )
        self._rewind_random_state()
        state = {"ntv": list(ntv)}

        def tied_seed(i, anchor):
            s = seeds[i]
            if s is not None and anchor is not None:
                s = zo.after(s, anchor)
            return s

        def operation_fn(op):
            is_layer = isinstance(op, keras.layers.Layer)
            t_idx = self.variable_indices(op) if is_layer else []
            n_idx = (
                self.variable_indices(op, trainable=False) if is_layer else []
            )
            takes_training = getattr(op, "_call_has_training_arg", False)
            if not n_idx and not any(seeds[i] is not None for i in t_idx):
                def plain(*args, **kwargs):
                    if takes_training:
                        kwargs["training"] = self.query_training
                    if not t_idx:
                        return op(*args, **kwargs)
                    # The step's values, not the live variables: on
                    # TensorFlow a live read could see `optimizer.apply`.
                    out, _ = op.stateless_call(
                        self.gather(tv, t_idx), [], *args, **kwargs
                    )
                    return out
                return plain
            # A layer with state (dropout seeds, BatchNorm statistics) runs
            # from the step's starting state in every pass, so +eps and -eps
            # see the same dropout masks.
            inner = inner_graph(op)
            if inner is not None:
                def nested(*args, **kwargs):
                    masks = keras.tree.flatten(kwargs.get("mask"))
                    if len(args) != 1 or any(m is not None for m in masks):
                        # Input masks: run the nested model whole.
                        return whole(*args, **kwargs)
                    outputs = inner._run_through_graph(
                        inner._standardize_inputs(args[0]),
                        operation_fn=operation_fn,
                    )
                    if isinstance(outputs, (list, tuple)) and len(outputs) == 1:
                        outputs = outputs[0]
                    return outputs

            def whole(*args, **kwargs):
                leaves = [
                    t for t in keras.tree.flatten((args, kwargs))
                    if hasattr(t, "shape") and hasattr(t, "dtype")
                ]
                anchor = (
                    ops.reshape(leaves[0], (-1,))[0] if leaves else None
                )
                if anchor is not None and self._splits_kernel(op, t_idx):
                    return self._dense_by_column_blocks(
                        op, args[0], tv, tied_seed, scales, epsilon, anchor
                    )
                if self._gathers_rows(op, t_idx, args, kwargs):
                    return self._embedding_rows(
                        op, args[0], tv, tied_seed, scales, epsilon, anchor
                    )
                values = [
                    zo.perturb([tv[i]], [tied_seed(i, anchor)], [scales[i]],
                               epsilon, self.distribution, self.generator)[0]
                    for i in t_idx
                ]
                if takes_training:
                    kwargs["training"] = self.query_training
                # Tied to the input too, so random draws (dropout) are made
                # when the layer runs, not all hoisted to the step's start.
                layer_state = [
                    v if anchor is None else zo.after(v, anchor)
                    for v in self.gather(state["ntv"], n_idx)
                ]
                out, new = op.stateless_call(
                    values, layer_state, *args, **kwargs
                )
                state["ntv"] = self.scatter(state["ntv"], n_idx, new)
                return out

            return nested if inner is not None else whole

        inputs = graph._standardize_inputs(x)
        outputs = graph._run_through_graph(inputs, operation_fn=operation_fn)
        if isinstance(outputs, (list, tuple)) and len(outputs) == 1:
            outputs = outputs[0]
        loss = self.compiled_loss(y, outputs, sample_weight)
        return ops.cast(loss, loss_dtype()), outputs, state["ntv"]

    def _splits_kernel(self, op, t_idx):
        """Whether `op` is a plain `Dense` whose kernel is perturbed in
        column blocks (larger than `_KERNEL_BLOCK` entries, portable
        directions, no LoRA, quantisation or mixed precision)."""
        if type(op) is not keras.layers.Dense or self.generator != "portable":
            return False
        if getattr(op, "lora_enabled", False) or (
            op.dtype_policy.quantization_mode is not None
            or op.compute_dtype != op.variable_dtype
        ):
            return False
        if len(t_idx) != len(op.weights):  # a frozen kernel or bias
            return False
        return int(np.prod(op.kernel.shape)) > _KERNEL_BLOCK

    def _gathers_rows(self, op, t_idx, args, kwargs):
        """Whether `op` is a plain `Embedding` lookup (keras-hub's
        `ReversibleEmbedding` too, not reversed) under the forward
        gradient: no mask, LoRA, quantisation or mixed precision, the table
        its only perturbed weight."""
        if self.estimator != "forward_gradient":
            return False
        if not isinstance(op, keras.layers.Embedding) or len(args) != 1:
            return False
        if set(kwargs) - {"training"} or op.mask_zero:
            return False
        if type(op).call is not keras.layers.Embedding.call and (
            type(op).__name__ != "ReversibleEmbedding"
        ):
            return False
        if getattr(op, "lora_enabled", False) or (
            op.dtype_policy.quantization_mode is not None
            or op.compute_dtype != op.variable_dtype
        ):
            return False
        return t_idx == [self.variable_position(op.embeddings)]

    def _embedding_rows(self, op, ids, tv, tied_seed, scales, epsilon,
                        anchor):
        """`take(W, ids) + eps take(z, ids)`, which is `take(W + eps z,
        ids)`: under a `jvp` in `eps` the table's direction `z` then has
        one consumer, a gather that XLA fuses with the draw, so neither
        `z` nor a perturbed table is materialised (the table is often a
        model's largest weight)."""
        e = self.variable_position(op.embeddings)
        if ids.dtype not in ("int32", "int64"):
            ids = ops.cast(ids, "int32")
        rows = ops.take(tv[e], ids, axis=0)
        seed = tied_seed(e, anchor)
        if seed is not None:
            z = zo.direction(tv[e].shape, seed, self.distribution,
                             tv[e].dtype, self.generator)
            if scales[e] is not None:
                z = z * ops.cast(scales[e], z.dtype)
            rows = rows + ops.cast(epsilon, rows.dtype) * ops.take(z, ids, axis=0)
        return rows

    def _dense_by_column_blocks(self, op, x, tv, tied_seed, scales, epsilon,
                                anchor):
        """`activation(x @ (W + eps z) + b + eps z_b)`, one block of `z`'s
        columns at a time: each block's draw is tied to the previous
        block's product, so only one block of `z` exists at a time (a CPU
        or GPU matmul needs its operand materialised; the whole perturbed
        kernel would be a weight-sized temporary). SPSA multiplies by the
        perturbed block `W + eps z`; the forward gradient (a `jvp` in
        `eps`) by `z` alone, adding `x @ W` once, since a perturbed block
        and its tangent `z` would be two block-sized temporaries."""
        k = self.variable_position(op.kernel)
        rows, cols = (int(d) for d in op.kernel.shape)
        width = max(1, _KERNEL_BLOCK // rows)
        eps = ops.cast(epsilon, tv[k].dtype)
        linear = self.estimator == "forward_gradient"
        previous = anchor
        if tied_seed(k, anchor) is None:
            y = ops.matmul(x, tv[k])
        else:
            outputs = []
            for start in range(0, cols, width):
                stop = min(cols, start + width)
                position = (
                    ops.expand_dims(ops.arange(rows, dtype="int32") * cols, 1)
                    + ops.expand_dims(ops.arange(start, stop, dtype="int32"), 0)
                )
                z = zo.direction_at(position, tied_seed(k, previous),
                                    self.distribution, tv[k].dtype)
                scale = scales[k]
                if scale is not None:
                    scale = ops.cast(scale, tv[k].dtype)
                    z = z * (scale[:, start:stop] if len(scale.shape) else scale)
                block = z if linear else tv[k][:, start:stop] + eps * z
                previous = ops.matmul(x, block)
                outputs.append(previous)
            y = ops.concatenate(outputs, axis=-1)
            if linear:
                y = ops.matmul(x, tv[k]) + eps * y
        if op.bias is not None:
            b = self.variable_position(op.bias)
            y = ops.add(y, zo.perturb(
                [tv[b]], [tied_seed(b, previous)], [scales[b]], epsilon,
                self.distribution, self.generator,
            )[0])
        if op.activation is not None:
            y = op.activation(y)
        return y

    def local_grads(
        self, trainable_values, non_trainable_values, x, y, sample_weight
    ):
        tv, ntv = list(trainable_values), list(non_trainable_values)
        if self._compile_loss is None:
            raise ValueError(
                "ZerothOrderModel needs a compiled loss. Received: "
                "`compile(...)` without `loss=`. Pass e.g. "
                "`loss=keras.losses.SparseCategoricalCrossentropy()`."
            )
        seed = self.step_seed(ntv)
        scales = self._scales(tv, ntv)
        q = self.num_queries
        logs = {}
        # Every forward pass of the step starts from this random state.
        self.__dict__["_step_random_state"] = backend.global_random_state()

        def loss_at(values):
            return self._forward(values, ntv, x, y, sample_weight)

        grads = [None] * len(tv)
        loss0 = y_pred = new_ntv = None
        if self._fo_idx:
            def head_loss(params):
                loss, y_pred, new_ntv = loss_at(
                    self.scatter(tv, self._fo_idx, params)
                )
                return loss, (y_pred, new_ntv)

            (loss0, (y_pred, new_ntv)), fo_grads = backend.value_and_grad(
                head_loss, has_aux=True
            )(self.gather(tv, self._fo_idx))
            grads = self.scatter(grads, self._fo_idx, fo_grads)
        elif self.one_sided or self.conservative:
            loss0, y_pred, new_ntv = loss_at(tv)

        def seeds_for(k, after_scalar):
            out = [None] * len(tv)
            for i in self._zo_idx:
                s = zo.direction_seed(seed, k, i)
                out[i] = s if after_scalar is None else zo.after(s, after_scalar)
            return out

        previous = loss0
        pgs = []
        if self.estimator == "spsa":
            losses = []
            for k in range(q):
                loss_plus, yp, ntv_p = self._perturbed_forward(
                    tv, ntv, x, y, sample_weight, seeds_for(k, previous),
                    scales, self.epsilon,
                )
                if y_pred is None:
                    y_pred, new_ntv = yp, ntv_p
                if self.one_sided:
                    pg = zo.one_sided_projected_gradient(
                        loss_plus, loss0, self.epsilon
                    )
                    previous = loss_plus
                    losses.append(loss_plus)
                else:
                    loss_minus, _, _ = self._perturbed_forward(
                        tv, ntv, x, y, sample_weight, seeds_for(k, loss_plus),
                        scales, -self.epsilon,
                    )
                    pg = zo.spsa_projected_gradient(
                        loss_plus, loss_minus, self.epsilon
                    )
                    previous = loss_minus
                    losses.append(0.5 * (loss_plus + loss_minus))
                # Under `tf.distribute`, every replica steps along z with
                # the whole batch's projected gradient (as on one device;
                # the sign and conservative variants are not linear in it).
                pg = backend.replica_mean(pg)
                pgs.append(pg)
                grads = self._accumulate(grads, tv, seeds_for(k, previous),
                                         scales, pg / q)
            if loss0 is None:
                loss0 = ops.mean(ops.stack(losses))
        else:
            # d/dt f(theta + t z) at t = 0 is grad f . z: one `jvp` in the
            # scalar t, with z drawn layer by layer inside the forward pass
            # (as for SPSA), so no weight-sized tangent is ever an input.
            t0 = ops.zeros((), dtype=loss_dtype())
            one = ops.ones((), dtype=loss_dtype())
            for k in range(q):
                seeds = seeds_for(k, previous)

                def along(t, seeds=seeds):
                    return self._perturbed_forward(
                        tv, ntv, x, y, sample_weight, seeds, scales, t[0]
                    )

                (loss, yp, ntv_k), (pg, _, _) = backend.jvp(
                    along, [t0], [one]
                )
                pg = backend.replica_mean(ops.cast(pg, loss_dtype()))
                if loss0 is None:
                    loss0 = loss
                if y_pred is None:
                    y_pred, new_ntv = yp, ntv_k
                pgs.append(pg)
                previous = loss
                grads = self._accumulate(grads, tv, seeds_for(k, previous),
                                         scales, pg / q)

        regularization, reg_idx, reg_grads = self._regularization(tv)
        if regularization is not None:
            for i, g in zip(reg_idx, reg_grads):
                grads[i] = g if grads[i] is None else grads[i] + ops.cast(g, grads[i].dtype)
            loss0 = loss0 + regularization
        if self.sign:
            grads = [
                g if i in self._fo_idx else ops.sign(g)
                for i, g in enumerate(grads)
            ]
        if self.conservative:
            lr = self.current_learning_rate()
            candidate = [
                v - ops.cast(lr, v.dtype) * g for v, g in zip(tv, grads)
            ]
            loss_new, _, _ = loss_at(candidate)
            if regularization is not None:
                loss_new = loss_new + self._regularization(candidate)[0]
            keep = ops.cast(
                backend.replica_mean(loss_new) <= backend.replica_mean(loss0),
                "float32",
            )
            grads = [g * ops.cast(keep, g.dtype) for g in grads]
            logs["step_kept"] = keep
        logs["projected_gradient"] = ops.mean(ops.abs(ops.stack(pgs)))
        new_ntv = list(new_ntv)
        new_ntv = self._advance(ntv, new_ntv, seed)
        self.__dict__["_step_random_state"] = None
        return grads, new_ntv, loss0, y_pred, logs

    def _rewind_random_state(self):
        """Each forward pass of a step draws the same dropout masks: the
        seed state comes from the step's start (`ntv`) and, on torch, whose
        unseeded dropout uses the global generator, that is rewound."""
        backend.restore_global_random_state(
            self.__dict__.get("_step_random_state")
        )

    def _accumulate(self, grads, tv, seeds, scales, coefficient):
        grads = list(grads)
        for i in self._zo_idx:
            z = zo.direction(tv[i].shape, seeds[i], self.distribution,
                             tv[i].dtype, self.generator)
            if scales[i] is not None:
                z = z * scales[i]
            g = ops.cast(coefficient, z.dtype) * z
            grads[i] = g if grads[i] is None else grads[i] + g
        return grads

    def _advance(self, ntv, new_ntv, seed):
        s = self._index(self.zo_step)
        m = self._index(self.mask_seed)
        step = ntv[s]
        new_ntv[s] = step + 1
        if self.sparsity > 0 and self.sparsity_mode == "random":
            resample = ops.equal(ops.mod(step, self.sparsity_resample_every), 0)
            new_ntv[m] = ops.where(resample, ops.cast(seed, "int32"), ntv[m])
        else:
            new_ntv[m] = ntv[m]
        return new_ntv

    # ------------------------------------------------------------------ #
    def validate_data(self, x, y=None, sample_weight=None):
        super().validate_data(x, y, sample_weight)
        if y is None:
            return
        if not self.compiled or self._compile_loss is None:
            raise ValueError(
                "ZerothOrderModel needs `compile(optimizer=..., loss=...)` "
                "before training. Received: a model compiled without a "
                "loss (or not compiled)."
            )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "estimator": self.estimator,
                "epsilon": self.epsilon,
                "num_queries": self.num_queries,
                "one_sided": self.one_sided,
                "distribution": self.distribution,
                "generator": self.generator,
                "sign": self.sign,
                "conservative": self.conservative,
                "block_wise": self.block_wise,
                "first_order_layers": None
                if self.first_order_layers is None
                else [
                    l if isinstance(l, str) else l.name
                    for l in self.first_order_layers
                ],
                "sparsity": self.sparsity,
                "sparsity_mode": self.sparsity_mode,
                "sparsity_resample_every": self.sparsity_resample_every,
                "query_training": self.query_training,
            }
        )
        return config


# A Dense kernel with more entries is perturbed in column blocks of at most
# this many entries (4 MiB in float32).
_KERNEL_BLOCK = 1 << 20


def _operations_reaching(graph, output_positions=None):
    """The operations of a functional `graph` (recursing into nested
    functional models) whose results reach its outputs at
    `output_positions` (flat positions; all outputs when `None`)."""
    outputs = list(graph.outputs)
    if output_positions is not None:
        outputs = [outputs[i] for i in sorted(output_positions)]
    used, seen, stack = [], set(), list(outputs)
    while stack:
        tensor = stack.pop()
        history = getattr(tensor, "_keras_history", None)
        op = getattr(history, "operation", None)
        if op is None or isinstance(op, keras.layers.InputLayer):
            continue
        node = op._inbound_nodes[history.node_index]
        key = (id(node), history.tensor_index)
        if key in seen:
            continue
        seen.add(key)
        inner = inner_graph(op)
        if inner is not None:
            used += _operations_reaching(inner, [history.tensor_index])
        else:
            used.append(op)
        stack.extend(node.arguments.keras_tensors)
    return used
