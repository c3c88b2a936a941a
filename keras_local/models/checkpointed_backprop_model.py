from keras import ops

from keras_local import backend
from keras_local.api_export import keras_local_export
from keras_local.models.local_loss_model import LocalLossModel
from keras_local.models.local_loss_model import _float_input
from keras_local.models.local_model import sum_losses
from keras_local.rules.ordering import after
from keras_local.rules.precision import loss_dtype


# `LocalLossModel` arguments that only concern auxiliary networks.
_AUXILIARY_ARGUMENTS = ("auxiliary", "auxiliary_depth", "pyramid_coefficient",
                        "infopro_lambdas", "momentum")


@keras_local_export
class CheckpointedBackpropModel(LocalLossModel):
    """End-to-end backprop with gradient checkpointing at module boundaries:
    the fair memory baseline for local learning.

    The network is cut into `num_modules` modules exactly as
    `LocalLossModel` cuts it. The train step runs the modules forward
    keeping only each module's input, then goes backward module by module:
    it recomputes one module's forward pass from its stored input and
    takes the vector-Jacobian product with the gradient arriving from the
    module above. The gradients are those of plain backprop (BatchNorm in
    training mode recomputes the same batch statistics; the moving
    statistics are updated once, from the first pass), while only the
    boundary tensors and one module's activations are alive at a time, at
    the cost of a second forward pass of every module but the last.

    Unlike `keras.remat`/`jax.checkpoint`, whose optimisation barriers XLA
    CPU removes before fusion, the stored inputs and the cotangents pass
    through `keras_local.backend.barrier`, so the compiled step keeps the
    checkpointing on every device.

    Args:
        network: a list of Keras layers or a `keras.Model` (Sequential or
            Functional, single input and output).
        num_modules: int, number of checkpointed segments. Defaults to
            `None` (one per block for a list of blocks).
        cuts: list of layer names after which segments end. Defaults to
            `None`.
        seed: int or `None`. Defaults to `None`.
        **kwargs: passed to `keras.Model`.

    Returns:
        A `keras.Model` whose `fit` computes backprop's gradients. Training
        logs `loss`: the compiled loss plus regularisation losses, as
        `fit` on the plain network would.

    Example:

    ```python
    (x, y), _ = keras_local.datasets.load_mnist()
    net = keras.Sequential(
        [keras.Input((784,))]
        + [keras.layers.Dense(1024, activation="relu") for _ in range(8)]
        + [keras.layers.Dense(10)]
    )
    model = keras_local.CheckpointedBackpropModel(net, num_modules=4)
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    model.fit(x.reshape(-1, 784) / 255.0, y)
    ```

    References:
        - Chen et al., "Training Deep Nets with Sublinear Memory Cost",
          2016.
        - Griewank and Walther, "Algorithm 799: Revolve", ACM TOMS 2000.
    """

    def __init__(self, network, num_modules=None, cuts=None, seed=None,
                 **kwargs):
        for name in _AUXILIARY_ARGUMENTS:
            kwargs.pop(name, None)
        super().__init__(network, num_modules=num_modules, cuts=cuts,
                         seed=seed, **kwargs)

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        self._split(input_shape)
        self._input_shape_ = input_shape
        self.built = True

    def local_log_names(self):
        return []

    def gradient_groups(self):
        # One loss, backpropagated through every module: `global_clipnorm`
        # clips jointly, as in Keras.
        return None

    def local_grads(
        self, trainable_values, non_trainable_values, x, y, sample_weight
    ):
        tv, ntv = list(trainable_values), list(non_trainable_values)
        x = _float_input(x)
        modules = self._module_list.value
        last = len(modules) - 1
        indices = [
            (self.variable_indices(m, trainable=True),
             self.variable_indices(m, trainable=False))
            for m in modules
        ]
        new_ntv = list(ntv)
        # Forward, keeping only each module's input.
        inputs = []
        h = x
        for k in range(last):
            m_t, m_n = indices[k]
            inputs.append(h)
            out, m_ntv = modules[k].stateless_call(
                self.gather(tv, m_t), self.gather(ntv, m_n), h, training=True
            )
            new_ntv = self.scatter(new_ntv, m_n, list(m_ntv))
            h = backend.barrier(backend.stop_gradient(out))

        # The last module: the loss, its gradients and the input cotangent.
        m_t, m_n = indices[last]
        takes_input = last > 0

        def last_loss(params, m_ntv):
            p, h_in = (params[:-1], params[-1]) if takes_input else (params, x)
            out, new_m_ntv, losses = modules[last].stateless_call(
                p, m_ntv, h_in, training=True, return_losses=True
            )
            reg = sum_losses(losses)
            return self._local_loss(y, out, sample_weight) + reg, (
                out, new_m_ntv
            )

        params = self.gather(tv, m_t) + ([h] if takes_input else [])
        (total, (y_pred, m_ntv)), g = backend.value_and_grad(
            last_loss, has_aux=True
        )(params, self.gather(ntv, m_n))
        new_ntv = self.scatter(new_ntv, m_n, list(m_ntv))
        grads = self.scatter([ops.zeros_like(v) for v in tv], m_t,
                             g[: len(m_t)])
        cotangent = g[-1] if takes_input else None

        # Backward: recompute each module from its input, then its VJP.
        for k in reversed(range(last)):
            m_t, m_n = indices[k]
            # The recomputation waits for the cotangent (and is not merged
            # with the first forward pass: its input is a new value).
            h_in, cotangent = backend.barrier(
                (after(inputs[k], cotangent), cotangent)
            )
            takes_input = k > 0

            def pulled_back(params, m_ntv, cotangent, h_in=h_in, k=k,
                            takes_input=takes_input):
                p, h = (params[:-1], params[-1]) if takes_input else (
                    params, h_in
                )
                out, _, losses = modules[k].stateless_call(
                    p, m_ntv, h, training=True, return_losses=True
                )
                reg = sum_losses(losses)
                dot = ops.sum(ops.cast(out, loss_dtype())
                              * ops.cast(cotangent, loss_dtype()))
                return dot + reg, reg

            params = self.gather(tv, m_t) + ([h_in] if takes_input else [])
            (_, reg), g = backend.value_and_grad(pulled_back, has_aux=True)(
                params, self.gather(ntv, m_n), cotangent
            )
            g = backend.barrier(list(g))
            grads = self.scatter(grads, m_t, g[: len(m_t)])
            cotangent = g[-1] if takes_input else None
            total = total + ops.cast(reg, loss_dtype())
        return grads, new_ntv, total, y_pred, {}

    def get_config(self):
        config = super().get_config()
        for name in _AUXILIARY_ARGUMENTS:
            config.pop(name, None)
        return config
