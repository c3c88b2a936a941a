import contextlib
import types

import keras
import numpy as np
from keras import ops
from keras.src.utils.tracking import no_automatic_dependency_tracking

from keras_local import backend
from keras_local.api_export import keras_local_export
from keras_local.layers.black_box import BlackBox
from keras_local.rules.labels import check_finite  # noqa: F401 (re-exported)
from keras_local.rules.precision import loss_dtype


@keras_local_export
class LocalModel(backend.LocalTrainer, keras.Model):
    """Base class of every keras_local learning rule.

    A rule implements one pure method, written with `keras.ops` and
    `keras_local.backend`:

    ```python
    def local_grads(self, trainable_values, non_trainable_values, x, y,
                    sample_weight):
        ...
        return grads, new_non_trainable_values, loss, y_pred, logs
    ```

    `grads` is a list aligned with `self.trainable_variables` (true
    gradients of local losses, or pseudo-gradients for rules that are not
    gradient descent); `new_non_trainable_values` is aligned with
    `self.non_trainable_variables`; `loss` is a scalar; `y_pred` feeds the
    compiled metrics (or is `None` to skip them during training); `logs` is
    a dict of scalars named in `local_log_names()`, each averaged over the
    epoch. `LocalModel` adapts this to the JAX, TensorFlow and PyTorch
    trainers, so `compile`, `fit`, `evaluate`, `predict`, callbacks, metrics,
    `jit_compile` and saving work as for any Keras model, and the gradients
    go through the user's compiled optimizer (schedules, clipping, weight
    decay keep working).

    Regularisation losses (`kernel_regularizer`, `activity_regularizer`):
    a rule that adds them to the local losses of the layers they belong to
    sets the class attribute `adds_regularization_losses = True` (the
    `call_with_losses` helper returns them). For the others, training a
    model with regularisers raises a `ValueError` instead of silently
    ignoring them; the optimizer's `weight_decay` works with every rule.
    A rule whose step needs the optimizer's learning rate (e.g. to try a
    step before taking it) sets `reads_learning_rate = True` and calls
    `self.current_learning_rate()`: the rate of this step, as a schedule or
    a callback such as `LearningRateScheduler` has set it.

    Under a `tf.distribute` strategy each replica runs `local_grads` on
    its share of the batch, with the compiled loss (`self.compiled_loss`)
    as a mean over that share like every other loss, and the optimizer
    applies the mean of the replicas' gradients. A rule that takes a
    decision on, or scales its update by, a statistic of the whole batch
    passes it through `keras_local.backend.replica_mean` first.

    Saving: a rule whose constructor takes layers or models (e.g.
    `blocks`) keeps each such argument in an attribute of the same name
    and lists the names in the class attribute `serialized_arguments`
    (e.g. `("blocks",)`); `get_config` then serialises them and
    `from_config` rebuilds them, so `save` and `keras.saving.load_model`
    work. The rule's `get_config` adds its other arguments.

    What is logged: during training `loss` is what the rule returns,
    normally the sum of its local losses (one per block, each also logged
    on its own); `evaluate` reports `evaluation_loss`, by default the
    compiled loss on `self(x)` if one was given, otherwise the rule's own
    evaluation loss (see each rule's docstring), plus, as in Keras, the
    regularisation losses of the network's prediction pass.

    Args:
        seed: int or `None`. Seeds the per-step random stream that rules use
            (`self.step_seed(...)`). Defaults to `None` (random).
        **kwargs: passed to `keras.Model`.

    Returns:
        A `keras.Model`.

    Example:

    ```python
    class MyRule(keras_local.LocalModel):
        def local_grads(self, tv, ntv, x, y, sample_weight):
            ...
    ```

    References:
        - Keras 3 custom `train_step` guides, keras.io.
    """

    adds_regularization_losses = False
    # A rule that uses `current_learning_rate()` in its step sets this, so
    # the trainers read the rate (from the step's state) and pass it in.
    reads_learning_rate = False
    # A rule whose batch is one indivisible whole (a full graph) sets this
    # to False: a `tf.distribute` strategy cannot split it across replicas.
    splits_across_replicas = True

    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        if seed is not None and not isinstance(seed, (int, np.integer)):
            raise TypeError(
                f"`seed` must be an int or None. Received: seed={seed!r}"
            )
        self.seed = seed
        self.step_seed_generator = keras.random.SeedGenerator(
            seed, name="step_seed"
        )
        self._local_trackers = {}
        self._regularizers_checked = False

    # ------------------------------------------------------------------ #
    # What a rule implements.
    # ------------------------------------------------------------------ #
    def local_grads(
        self, trainable_values, non_trainable_values, x, y, sample_weight
    ):
        raise NotImplementedError(
            f"{type(self).__name__} must implement `local_grads(...)`."
        )

    def local_log_names(self):
        """Names of the extra scalars `local_grads` logs (epoch means)."""
        return []

    def gradient_groups(self):
        """The parts of the model that learn from separate local losses.

        A list whose items are layers, variables or lists of them; the
        trainable variables in no item form one more group. `None` (the
        default) means one loss trains the whole model.

        The optimizer's `global_clipnorm` clips each group by its own
        norm: one norm over every group would scale a block's step by the
        size of the other blocks' gradients, a signal crossing the block
        boundaries that local learning has not got.
        """
        return None

    def evaluation_loss(
        self, trainable_values, non_trainable_values, x, y, y_pred,
        sample_weight,
    ):
        """The loss `evaluate` reports; the compiled loss by default."""
        if self._compile_loss is None:
            return ops.convert_to_tensor(0.0)
        return self.compiled_loss(y, y_pred, sample_weight)

    def compiled_loss(self, y, y_pred, sample_weight=None):
        """The compiled loss of `y_pred`, leaving alone the per-output loss
        trackers Keras keeps for a model with several outputs.

        A rule evaluates its loss several times a step (perturbed passes,
        one block after another); the trackers are updated once per step,
        from the step's prediction, by `_update_local_metrics`. (On JAX the
        trackers' variables are not even readable inside the step.) Under a
        `tf.distribute` strategy it is the mean over the replica's batch,
        like the rule's other losses.
        """
        trackers = [v for m in self._compile_loss.metrics for v in m.variables]
        if not trackers:
            loss = self._compile_loss(y, y_pred, sample_weight)
        else:
            # The losses read no model variable, so this scope may stand
            # alone.
            scratch = [(v, ops.zeros(v.shape, v.dtype)) for v in trackers]
            with keras.StatelessScope(state_mapping=scratch):
                loss = self._compile_loss(y, y_pred, sample_weight)
        # Keras computes its losses in floatx; a float64 policy sums in float64.
        return backend.per_replica_loss(ops.cast(loss, loss_dtype()))

    def validate_data(self, x, y=None, sample_weight=None):
        """Checks concrete arrays before anything is trained. Rules extend
        this; it raises `ValueError` on bad input."""
        check_finite(x, "x")

    def validate_shapes(self, x, y=None):
        """Static (trace-time) checks of a batch; rules extend this."""

    # ------------------------------------------------------------------ #
    # Helpers for rules.
    # ------------------------------------------------------------------ #
    def variable_indices(self, layer, trainable=True):
        """Positions of `layer`'s variables in the model's flat lists."""
        pool = (
            self.trainable_variables
            if trainable
            else self.non_trainable_variables
        )
        position = {id(v): i for i, v in enumerate(pool)}
        layer_vars = (
            layer.trainable_variables
            if trainable
            else layer.non_trainable_variables
        )
        return [position[id(v)] for v in layer_vars if id(v) in position]

    def variable_position(self, variable):
        """Position of one variable in the model's flat lists."""
        pool = self.trainable_variables if variable.trainable else self.non_trainable_variables
        for i, v in enumerate(pool):
            if v is variable:
                return i
        raise ValueError(f"{variable.path} is not a variable of {self.name}.")

    @staticmethod
    def gather(values, indices):
        return [values[i] for i in indices]

    @staticmethod
    def scatter(values, indices, updates):
        """A copy of the list `values` with `updates` at `indices`."""
        values = list(values)
        for i, u in zip(indices, updates):
            values[i] = u
        return values

    def layer_call(
        self, layer, trainable_values, non_trainable_values, inputs,
        training=True, **kwargs,
    ):
        """`layer.stateless_call` on the layer's slice of the flat lists.

        Returns `(outputs, non_trainable_values)` with the layer's updated
        non-trainable values written into a copy of the model-level list.
        """
        t_idx = self.variable_indices(layer, trainable=True)
        n_idx = self.variable_indices(layer, trainable=False)
        outputs, new_layer_ntv = layer.stateless_call(
            self.gather(trainable_values, t_idx),
            self.gather(non_trainable_values, n_idx),
            inputs,
            **training_kwargs(layer, training),
            **kwargs,
        )
        return outputs, self.scatter(non_trainable_values, n_idx, new_layer_ntv)

    def step_seed(self, non_trainable_values, salt=0):
        """The seed tensor of the current step (same within a step)."""
        i = self._seed_index()
        seed = non_trainable_values[i]
        if salt:
            seed = seed + ops.cast(ops.convert_to_tensor([salt, 0]), seed.dtype)
        return seed

    def _seed_index(self):
        return self.variable_position(self.step_seed_generator.state)

    # ------------------------------------------------------------------ #
    # The adapter (called by backend.LocalTrainer).
    # ------------------------------------------------------------------ #
    def _local_update(self, tv, ntv, x, y, sample_weight, learning_rate=None):
        self.validate_shapes(x, y)
        if not self._regularizers_checked:
            self._check_regularizers()
        self.__dict__["_step_learning_rate"] = learning_rate
        try:
            out = self.local_grads(list(tv), list(ntv), x, y, sample_weight)
        finally:
            self.__dict__["_step_learning_rate"] = None
        if len(out) == 4:
            grads, new_ntv, loss, y_pred = out
            logs = {}
        else:
            grads, new_ntv, loss, y_pred, logs = out
        grads = self._clip_gradient_groups(grads)
        new_ntv = list(new_ntv)
        i = self._seed_index()
        increment = ops.cast(ops.convert_to_tensor([0, 1]), new_ntv[i].dtype)
        new_ntv[i] = ntv[i] + increment
        return grads, new_ntv, loss, y_pred, logs

    def current_learning_rate(self):
        """The compiled optimizer's learning rate for this step: a schedule
        evaluated at the current iteration, a rate a callback has set. In a
        trainer's step (for a rule with `reads_learning_rate = True`), the
        value the trainer read at the step's start, before the update;
        elsewhere, read from the optimizer now."""
        value = self.__dict__.get("_step_learning_rate")
        if value is None:
            value = self.optimizer.learning_rate
        return ops.convert_to_tensor(value)

    def _trainable_key(self):
        """Identifies the current set of trainable variables: positions in
        `trainable_variables` cached against it are stale once a layer is
        frozen or unfrozen."""
        return tuple(id(v) for v in self.trainable_variables)

    def _gradient_group_indices(self):
        """`gradient_groups()` as lists of positions in
        `trainable_variables`, or `None` for one group."""
        groups = self.gradient_groups()
        if not groups:
            return None
        position = {id(v): i for i, v in enumerate(self.trainable_variables)}
        out, seen = [], set()
        for item in groups:
            members = item if isinstance(item, (list, tuple)) else [item]
            indices = []
            for member in members:
                if isinstance(member, keras.layers.Layer):
                    variables = member.trainable_variables
                else:
                    variables = [member]
                indices += [
                    position[id(v)] for v in variables
                    if id(v) in position and position[id(v)] not in seen
                ]
                seen.update(indices)
            if indices:
                out.append(indices)
        rest = [i for i in range(len(position)) if i not in seen]
        if rest:
            out.append(rest)
        return out if len(out) > 1 else None

    def _group_clipnorm(self):
        """`(clipnorm, groups)`: the optimizer's `global_clipnorm` and the
        gradient groups if this rule clips group by group (several groups),
        else `(None, None)`."""
        inner = _inner_optimizer(getattr(self, "optimizer", None))
        clipnorm = getattr(inner, "global_clipnorm", None)
        if not clipnorm:
            return None, None
        # Called twice per step (to clip, then to turn the optimizer's own
        # clipping off): the groups are rebuilt only when the trainable
        # variables change.
        key = self._trainable_key()
        cached = self.__dict__.get("_gradient_groups_cache")
        if cached is None or cached[0] != key:
            cached = (key, self._gradient_group_indices())
            # In `__dict__`: not model state for Keras to track.
            self.__dict__["_gradient_groups_cache"] = cached
        groups = cached[1]
        if groups is None:
            return None, None
        if inner.gradient_accumulation_steps:
            raise ValueError(
                f"{type(self).__name__} clips each of its separately trained "
                "parts by its own norm, which it cannot do on gradients the "
                "optimizer accumulates over several steps. Received: an "
                f"optimizer with global_clipnorm={clipnorm} and "
                "gradient_accumulation_steps="
                f"{inner.gradient_accumulation_steps}. Use `clipnorm` "
                "(per variable) or `clipvalue` instead, or no accumulation."
            )
        return clipnorm, groups

    def _clip_gradient_groups(self, grads):
        clipnorm, groups = self._group_clipnorm()
        if clipnorm is None:
            return grads
        grads = list(grads)
        for indices in groups:
            present = [i for i in indices if grads[i] is not None]
            if not present:
                continue
            clipped = clip_by_global_norm([grads[i] for i in present], clipnorm)
            grads = self.scatter(grads, present, clipped)
        return grads

    @contextlib.contextmanager
    def _clipping_done(self):
        """Within this context the optimizer skips its `global_clipnorm`
        where `_local_update` already clipped group by group."""
        if self._group_clipnorm()[0] is None:
            yield
            return
        inner = _inner_optimizer(self.optimizer)
        clipnorm = inner.global_clipnorm
        inner.global_clipnorm = None
        try:
            yield
        finally:
            inner.global_clipnorm = clipnorm

    def _check_regularizers(self):
        if not self.adds_regularization_losses:
            found = regularized_parts(self)
            if found:
                raise ValueError(
                    f"{type(self).__name__} does not add regularisation "
                    "losses to its local losses, so these regularisers "
                    f"would be silently ignored: {found}. Received: a "
                    "model with regularisers. Remove them and use the "
                    "optimizer's weight decay instead (e.g. "
                    "`keras.optimizers.AdamW(weight_decay=...)` or "
                    "`SGD(weight_decay=...)`)."
                )
        self._regularizers_checked = True

    def _local_evaluate(self, tv, ntv, x, y, sample_weight):
        self.validate_shapes(x, y)
        mapping = list(zip(self.trainable_variables, tv)) + list(
            zip(self.non_trainable_variables, ntv)
        )
        # As in Keras's `evaluate`, the loss includes the regularisation
        # losses of the prediction pass: weight regularisers of the network
        # and the activity regularisers and `add_loss` terms of the call.
        with keras.StatelessScope(state_mapping=mapping, collect_losses=True):
            y_pred = self.call(x, **training_kwargs(self, False))
            regularization = sum_losses(self._regularized_network().losses)
        loss = self.evaluation_loss(tv, ntv, x, y, y_pred, sample_weight)
        return ops.cast(loss, loss_dtype()) + regularization, y_pred

    def _regularized_network(self):
        """The layer whose `losses` count in `evaluate`: the model itself,
        unless it holds parts that prediction does not use."""
        return self

    def _update_local_metrics(self, loss, x, y, y_pred, sample_weight, logs):
        first = keras.tree.flatten(x)[0]
        self._loss_tracker.update_state(loss, sample_weight=ops.shape(first)[0])
        out = {"loss": self._loss_tracker.result()}
        if y_pred is not None and self._compile_metrics is not None:
            self._compile_metrics.update_state(y, y_pred, sample_weight)
            out.update(self._compile_metrics.result())
        if y_pred is not None and self._compile_loss is not None:
            per_output = self._compile_loss.metrics
            if per_output:  # several outputs: `<output>_loss`, as in Keras
                self._compile_loss(y, y_pred, sample_weight)
                out.update({m.name: m.result() for m in per_output})
        trackers = self._local_trackers or {}
        for name, value in logs.items():
            trackers[name].update_state(value)
        for name, tracker in trackers.items():
            if name in logs:
                out[name] = tracker.result()
        return out

    # ------------------------------------------------------------------ #
    # Keras entry points: build, validation, trackers.
    # ------------------------------------------------------------------ #
    def _get_metrics_result_or_logs(self, logs):
        # Keras reads the epoch's results from the metrics only when the
        # step's logs name every metric, and otherwise keeps the last
        # step's logs: under `tf.distribute` one replica's partial results.
        # `evaluate` logs no per-block loss, so read what it logs.
        results = self.get_metrics_result()
        if isinstance(logs, dict) and set(logs) <= set(results):
            return {name: results[name] for name in logs}
        return logs

    @no_automatic_dependency_tracking
    def compile(self, *args, **kwargs):
        super().compile(*args, **kwargs)
        # Created here, untracked like Keras's own loss tracker, so that a
        # model built before `compile` (as in `load_model`) can take them.
        self._local_trackers = {
            name: keras.metrics.Mean(name=name)
            for name in self.local_log_names()
        }

    @property
    def metrics(self):
        metrics = super().metrics
        if self.compiled and self._local_trackers:
            metrics = metrics + list(self._local_trackers.values())
        return metrics

    # Constructor arguments that may hold Keras objects (a layer, a model or
    # a function, or a list of them), kept as attributes of the same name:
    # `get_config` serialises them and `from_config` rebuilds them before
    # calling the constructor.
    serialized_arguments = ()

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        for key in cls.serialized_arguments:
            value = config.get(key)
            if isinstance(value, list):
                config[key] = [
                    keras.saving.deserialize_keras_object(item, custom_objects)
                    for item in value
                ]
            elif isinstance(value, dict):
                config[key] = keras.saving.deserialize_keras_object(value, custom_objects)
        return cls(**config)

    def compile_from_config(self, config):
        # Keras skips models that override `compile`; ours only adds the
        # log trackers, so loading compiles as usual.
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if self.built and getattr(self, "optimizer", None) is not None:
            self.optimizer.build(self.trainable_variables)

    def _ensure_built(self, x):
        if not self.built:
            shapes = keras.tree.map_structure(
                lambda t: (None,) + tuple(t.shape[1:]), x
            )
            self.build(shapes)

    def _check_replicas(self):
        replicas = backend.num_replicas(self)
        if replicas > 1 and not self.splits_across_replicas:
            raise ValueError(
                f"{type(self).__name__} takes a whole graph as one batch, "
                "which a `tf.distribute` strategy cannot split across "
                f"replicas. Received: a strategy with {replicas} replicas "
                "in sync. Build the model outside the strategy's scope (or "
                "under a one-device strategy)."
            )

    def _check_arrays(self, x, y, sample_weight):
        self._check_replicas()
        if _is_array_like(x) and (y is None or _is_array_like(y)):
            self.validate_data(x, y, sample_weight)
            self._prepare_for_batch((x, y, sample_weight))

    def _prepare_for_batch(self, batch):
        # Build blocks, compiled metrics and optimizer before the first
        # trace: TF's `fit` traces an unbuilt model, and variables cannot be
        # created inside a compiled step.
        x, y, sample_weight = _unpack(batch)
        # Where Keras's `fit` builds (on TF, under a `tf.distribute`
        # strategy, the variables must be created in its scope).
        with backend.build_scope(self):
            self._ensure_built(x)
            if self.compiled:
                self._symbolic_build(data_batch=(x, y, sample_weight))
            if not self._called:
                # A rule without compiled loss or metrics never calls the
                # model in `fit`; `export` needs one (symbolic) call.
                self(keras.tree.map_structure(
                    lambda t: keras.KerasTensor(t.shape, dtype=t.dtype), x
                ))

    def fit(self, x=None, y=None, *args, **kwargs):
        self._check_arrays(x, y, kwargs.get("sample_weight"))
        validation_data = kwargs.get("validation_data")
        if isinstance(validation_data, (tuple, list)) and len(validation_data) >= 2:
            self._check_arrays(validation_data[0], validation_data[1], None)
        x = self._prepare_from_stream(x)
        return super().fit(x, y, *args, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        self._check_arrays(x, y, kwargs.get("sample_weight"))
        x = self._prepare_from_stream(x)
        return super().evaluate(x, y, *args, **kwargs)

    def _prepare_from_stream(self, x):
        """Builds from the first batch of a dataset or generator `x`;
        returns `x`, or for a generator an equivalent one (its first batch,
        taken here, put back in front). TF's `fit` traces the step before
        Keras builds the model from a generator, too late for the rules,
        whose variables must exist before the trace."""
        if x is None or _is_array_like(x):
            return x
        if isinstance(x, types.GeneratorType):  # the one iterator Keras takes
            try:
                first = next(x)
            except StopIteration:
                return x
            x = _put_back(first, x)
            batch = _to_numpy(first)
        else:
            batch = _peek(x)
        if batch is not None:
            self._prepare_for_batch(batch)
        return x

    def train_on_batch(self, x, y=None, sample_weight=None, *args, **kwargs):
        self._check_arrays(x, y, sample_weight)
        return super().train_on_batch(x, y, sample_weight, *args, **kwargs)

    def test_on_batch(self, x, y=None, sample_weight=None, *args, **kwargs):
        self._check_arrays(x, y, sample_weight)
        return super().test_on_batch(x, y, sample_weight, *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        self._check_replicas()
        if _is_array_like(x):
            self.validate_data(x)
            self._ensure_built(x)
        return super().predict(x, *args, **kwargs)

    def export(self, filepath, format="tf_saved_model", verbose=None,
               input_signature=None, **kwargs):
        """`keras.Model.export`, refused with a `ValueError` for a model
        that holds a NumPy `BlackBox` (see `check_exportable`)."""
        check_exportable(self)
        return super().export(
            filepath, format=format, verbose=verbose,
            input_signature=input_signature, **kwargs
        )

    def save_own_variables(self, store):
        super().save_own_variables(store)
        # Keras does not save seed generators; the step seed is saved so a
        # reloaded model resumes with the same random stream.
        store["step_seed"] = keras.ops.convert_to_numpy(
            self.step_seed_generator.state.value
        )

    def load_own_variables(self, store):
        values = {key: store[key] for key in store.keys()}
        if "step_seed" in values:
            self.step_seed_generator.state.assign(values.pop("step_seed"))
        super().load_own_variables(values)

    def get_config(self):
        config = super().get_config()
        config.update({"seed": self.seed})
        for key in self.serialized_arguments:
            value = getattr(self, key)
            if isinstance(value, (list, tuple)):
                config[key] = [keras.saving.serialize_keras_object(item) for item in value]
            elif callable(value):  # a layer, a model or a function
                config[key] = keras.saving.serialize_keras_object(value)
            else:  # e.g. the name of a built-in choice
                config[key] = value
        return config


def check_exportable(model):
    """Raises `ValueError` if `model` holds a `BlackBox` that calls NumPy.

    Such a black box runs Python on the host (`tf.numpy_function`,
    `jax.pure_callback`, a direct call on PyTorch), which no exported
    artifact can hold: TensorFlow would write a SavedModel that fails when
    loaded in another process, JAX and PyTorch fail inside their exporters.
    """
    host = [
        layer.name for layer in model._flatten_layers()
        if isinstance(layer, BlackBox) and layer.mode == "numpy"
    ]
    if host:
        raise ValueError(
            "A model that calls a NumPy black box cannot be exported: the "
            "black box runs Python on the host, which an exported artifact "
            f"cannot hold. Received: {type(model).__name__} with NumPy black "
            f"box(es) {host}. Serve it from Python with `model.predict`, or "
            "wrap the system as a Keras callable (`BlackBox(..., "
            'mode="tensor")`), which exports.'
        )


def regularized_parts(model, weights=True, activity=True):
    """Names of the trainable weights with a regulariser (`weights`) and of
    the layers with an activity regulariser (`activity`) in `model`."""
    found = []
    if activity:
        found += [
            f"{layer.name} (activity_regularizer)"
            for layer in model._flatten_layers(include_self=False)
            if getattr(layer, "activity_regularizer", None) is not None
        ]
    if weights:
        found += [
            v.path for v in model.trainable_variables
            if getattr(v, "regularizer", None) is not None
        ]
    return found


def _inner_optimizer(optimizer):
    """The optimizer that clips: the wrapped one of a `LossScaleOptimizer`."""
    return getattr(optimizer, "inner_optimizer", optimizer)


def clip_by_global_norm(grads, clipnorm):
    """Keras's `global_clipnorm` rule on one list of gradients: scaled by
    `clipnorm / norm` when their joint norm exceeds `clipnorm` (NaN, so the
    step is visibly bad, when the norm is not finite)."""
    norm = ops.sqrt(ops.sum(ops.stack(
        [ops.cast(ops.sum(ops.square(g)), loss_dtype()) for g in grads]
    )))
    scale = clipnorm * ops.minimum(1.0 / norm, 1.0 / clipnorm)
    scale = scale + (norm - norm)
    return [g * ops.cast(scale, g.dtype) for g in grads]


def call_with_losses(layer, params, non_trainable_values, inputs, training=True, **kwargs):
    """`layer.stateless_call` that also returns the sum (a scalar in
    `loss_dtype()`) of the losses the call adds: weight regularisers
    evaluated at `params`, activity regularisers, `add_loss` terms.

    Returns:
        `(outputs, new_non_trainable_values, losses)`.
    """
    outputs, new_ntv, losses = layer.stateless_call(
        params, non_trainable_values, inputs, return_losses=True,
        **training_kwargs(layer, training), **kwargs,
    )
    return outputs, new_ntv, sum_losses(losses)


def sum_losses(losses):
    """The sum of a list of scalar losses in `loss_dtype()` (0 for none)."""
    total = ops.convert_to_tensor(0.0, dtype=loss_dtype())
    for loss in losses:
        total = total + ops.cast(loss, loss_dtype())
    return total


def _is_array_like(x):
    if x is None:
        return False
    leaves = keras.tree.flatten(x)
    return bool(leaves) and all(
        hasattr(t, "shape") and hasattr(t, "dtype") and len(t.shape) > 0
        for t in leaves
    )


def _put_back(first, rest):
    yield first
    yield from rest


def _peek(x):
    """The first batch of a tf.data / PyDataset / DataLoader, if cheap."""
    try:
        if hasattr(x, "take") and hasattr(x, "element_spec"):  # tf.data
            for batch in x.take(1):
                return _to_numpy(batch)
        if hasattr(x, "__getitem__") and hasattr(x, "__len__"):  # PyDataset
            return _to_numpy(x[0])
        if hasattr(x, "dataset") and hasattr(x, "batch_size"):  # DataLoader
            return _to_numpy(next(iter(x)))
    except Exception:  # noqa: BLE001 - Keras builds later in any case
        return None
    return None


def _to_numpy(batch):
    return keras.tree.map_structure(
        lambda t: None if t is None else np.asarray(t), batch
    )


def _unpack(batch):
    if isinstance(batch, (tuple, list)):
        batch = tuple(batch) + (None,) * (3 - len(batch))
        return batch[0], batch[1], batch[2]
    return batch, None, None


def training_kwargs(layer, training):
    """`{"training": training}` if the layer's `call` takes it, else `{}`:
    `stateless_call` calls `call` directly, without Keras's filtering."""
    if getattr(layer, "_call_has_training_arg", False):
        return {"training": training}
    return {}
