import keras
import numpy as np
from keras import ops
from keras.src.utils.tracking import no_automatic_dependency_tracking

from keras_local import backend
from keras_local.api_export import keras_local_export
from keras_local.layers.resizing_conv2d import ResizingConv2D
from keras_local.models.functional_graph import inlined
from keras_local.models.functional_graph import input_structure
from keras_local.models.local_model import LocalModel
from keras_local.models.local_model import check_exportable
from keras_local.models.local_model import sum_losses
from keras_local.rules.ordering import after
from keras_local.rules import local_learning as ll
from keras_local.rules.precision import loss_dtype


class _Untracked:
    """Holds objects out of Keras's automatic tracking (the modules share
    their layers with the network, which is tracked once)."""

    def __init__(self, value):
        self.value = value


@keras_local_export
class LocalLossModel(LocalModel):
    """Supervised local learning: a network split into modules, each
    trained by its own auxiliary network (DGL, InfoPro, AugLocal, MAN).

    The network (a list of blocks, or a Keras Sequential / Functional model)
    is cut into `num_modules` modules at layer boundaries that a single
    tensor crosses (`split_points()` lists them). Each module but the last
    has an auxiliary network that turns its output into a prediction; the
    module is trained by the compiled loss on that prediction (plus, for
    InfoPro, a reconstruction loss), the last module by the compiled loss
    on the network's output. The train step goes module by module: forward
    one module on the detached output of the previous one, take its local
    loss and gradients, then go on, so no error signal crosses a module
    boundary and only one module's activations are needed for a backward
    pass. BatchNorm statistics, Dropout and regularisation losses work as
    in `fit`. `predict` and `evaluate` run the network alone;
    `inference_model()` returns it as a plain `keras.Model`. Training logs
    `loss` (the sum) and `module_{k}_loss` for every module.

    Args:
        network: a list of Keras layers (blocks) or a `keras.Model`
            (Sequential or Functional, one output; a Functional model may
            take several inputs, which all go to the first module). A
            functional model nested as one layer (a backbone:
            `x = keras.applications.ResNet50(include_top=False)(x)`) is
            opened up, so cuts may fall between its own layers; one called
            with its own `training=` or `mask=` stays a single layer.
        num_modules: int, number of modules K. The K-1 cuts are the legal
            split points that balance the modules' numbers of weighted
            layers (least sum of squares), so a ResNet is cut between
            residual blocks and the classifier stays with the last block.
            `None` with a list of blocks means one module per block; with a
            model, `num_modules` or `cuts` must be given. Defaults to
            `None`.
        cuts: list of layer names: the modules end after these layers
            (each must be a legal split point). Defaults to `None`.
        auxiliary: `"dgl"` (a small classifier: 3x3 conv + ReLU, strided
            on maps larger than 8x8, global pooling and a dense layer for
            images; dense for vectors),
            `"infopro"` (InfoPro's strided conv + MLP classifier plus a
            decoder reconstructing the input), `"auglocal"` (fresh copies
            of a uniform selection of the later layers, depth shrinking
            linearly with k, then a copy of the network's head; where a
            skipped layer changed the shape, a 1x1 convolution, strided
            if the map shrank, or a dense layer adapts it), `"man"`
            (MAN: the layer after the module, e.g. the next residual
            block, twice, summed: a momentum copy following its weights
            and a trainable copy, the learnable bias; then the head that
            `man_head` names) or a callable
            `fn(k, feature_shape, output_shape) -> keras.layers.Layer`.
            Defaults to `"dgl"`.
        auxiliary_depth: int, AugLocal's largest depth: the number of
            later layers copied into the first module's auxiliary network
            before the copy of the network's head. A layer is a part with a
            kernel and the kernel-less parts after it, e.g. a residual
            block (`auglocal_units`). Defaults to `3`.
        pyramid_coefficient: float in [0, 1], AugLocal's pyramid
            coefficient: module k's depth is
            `max(1, round(d * (1 - r) + r))` with
            `r = pyramid_coefficient * k / (K - 2)` and `d` the
            `auxiliary_depth`; 0 keeps every depth at `d`, 1 shrinks it to 1
            at the module before the last. Defaults to `0.5`, as in
            AugLocal's CIFAR commands.
        infopro_lambdas: `(lambda_reconstruction, lambda_class)` for every
            module, or `((l1_first, l2_first), (l1_last, l2_last))`: the
            weights go linearly from the first module to the last one with
            an auxiliary network (module k at `k / (K - 2)`), the schedule
            of InfoPro's reference code (its ResNet-32, K=16 setting is
            `((5, 0.05), (0.2, 0.5))`). Defaults to `(1.0, 1.0)`.
        infopro_reconstruction: `"mse"` (squared error of the decoder's
            output) or `"binary_crossentropy"` (the decoder's output are
            logits, `sigmoid` + binary cross-entropy against the input in
            [0, 1], as InfoPro's reference decoder). Defaults to `"mse"`.
        infopro_input_mean: `None`, a float or one float per channel: the
            mean that standardised the inputs. With `infopro_input_std`,
            the decoder reconstructs `x * std + mean` (the image before
            standardisation, in [0, 1] for `"binary_crossentropy"`)
            instead of `x`. Defaults to `None`.
        infopro_input_std: `None`, a float or one float per channel (> 0),
            see `infopro_input_mean`. Defaults to `None`.
        infopro_target: name of the input InfoPro's decoder reconstructs,
            required for a network with several inputs (e.g. `"image"` of
            an image + metadata network); `None` for one input. Defaults
            to `None`.
        man_head: `"dgl"` or `"infopro"`: what reads MAN's summed
            features, the DGL classifier (the MAN++ code's DGL+MAN) or
            InfoPro's classifier and decoder with the InfoPro loss and its
            `infopro_*` options (the MAN paper's InfoPro+MAN). Where the
            layer after the module is the network's head, InfoPro's
            decoder reads the module's output instead. Only with
            `auxiliary="man"`. Defaults to `"dgl"`.
        momentum: float, MAN's EMA momentum: after each step the momentum
            copy's weights become `momentum * copy + (1 - momentum) *
            layer` (the layer's weights before the step's update); they
            start equal to the layer's. Defaults to `0.995`.
        remat: bool, rematerialise each module but the last: its forward
            pass keeps no activations, its auxiliary network's loss gives
            the gradient at the module's output, then the module is run
            again and that gradient pulled back through it. A module's
            activations and its auxiliary network's are then never held
            together, for one more forward pass of the module (the trade
            checkpointed backprop makes). Gradients are unchanged.
            Defaults to `False`.
        seed: int or `None`. Defaults to `None`.
        **kwargs: passed to `keras.Model`.

    Returns:
        A `keras.Model`.

    Example:

    ```python
    (x, y), _ = keras_local.datasets.load_cifar10(max_train=10000)
    inputs = keras.Input((32, 32, 3))
    h = inputs
    for filters in (32, 64, 128, 256):
        h = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(h)
        h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    net = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(h))
    # Any Functional model works the same way, e.g. keras.applications.ResNet50(
    #     weights=None, classes=10, input_shape=(32, 32, 3)).
    model = keras_local.LocalLossModel(net, num_modules=4, auxiliary="auglocal")
    model.compile(optimizer="adam",
                  loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x / 255.0, y, epochs=1)
    plain = model.inference_model()
    ```

    References:
        - Belilovsky et al., "Decoupled Greedy Learning of CNNs", ICML 2020.
        - Wang et al., "Revisiting Locally Supervised Learning: an
          Alternative to End-to-end Training", ICLR 2021.
        - Ma et al., "Scaling Supervised Local Learning with Augmented
          Auxiliary Networks", ICLR 2024.
        - Su et al., "Momentum Auxiliary Network for Supervised Local
          Learning", ECCV 2024.
    """

    serialized_arguments = ("network", "auxiliary")

    adds_regularization_losses = True

    def __init__(
        self,
        network,
        num_modules=None,
        cuts=None,
        auxiliary="dgl",
        auxiliary_depth=3,
        pyramid_coefficient=0.5,
        infopro_lambdas=(1.0, 1.0),
        infopro_reconstruction="mse",
        infopro_input_mean=None,
        infopro_input_std=None,
        infopro_target=None,
        man_head="dgl",
        momentum=0.995,
        remat=False,
        seed=None,
        **kwargs,
    ):
        super().__init__(seed=seed, **kwargs)
        if not isinstance(remat, (bool, np.bool_)):
            raise TypeError(
                "`remat` must be a bool (rematerialise each module for its "
                f"backward pass). Received: remat={remat!r}"
            )
        if isinstance(network, (list, tuple)):
            if not network or not all(
                isinstance(b, keras.layers.Layer) for b in network
            ):
                raise ValueError(
                    "`network` must be a non-empty list of Keras layers or a "
                    f"keras.Model. Received: network={network!r}"
                )
            network = keras.Sequential(list(network))
        if not isinstance(network, keras.Model):
            raise ValueError(
                "`network` must be a list of Keras layers or a keras.Model "
                f"(Sequential or Functional). Received: {network!r} of type "
                f"{type(network).__name__}"
            )
        if not (auxiliary in ll.AUXILIARY_TYPES or callable(auxiliary)):
            raise ValueError(
                f"Unknown `auxiliary`. Expected one of {ll.AUXILIARY_TYPES} "
                f"or a callable. Received: auxiliary={auxiliary!r}"
            )
        if num_modules is not None and (
            not isinstance(num_modules, (int, np.integer)) or num_modules < 1
        ):
            raise ValueError(
                "`num_modules` must be an int >= 1. Received: "
                f"num_modules={num_modules!r}"
            )
        if cuts is not None:
            cuts = [cuts] if isinstance(cuts, str) else list(cuts)
            if num_modules is not None and num_modules != len(cuts) + 1:
                raise ValueError(
                    f"{len(cuts)} cuts make {len(cuts) + 1} modules. "
                    f"Received: num_modules={num_modules}, cuts={cuts}"
                )
        if (
            num_modules is None
            and cuts is None
            and not isinstance(network, keras.Sequential)
        ):
            raise ValueError(
                "Splitting a model needs `num_modules` or `cuts`. Received "
                "neither. Pass e.g. `num_modules=4`, or see "
                "`LocalLossModel.split_points_of(model)`."
            )
        if man_head not in ll.MAN_HEADS:
            raise ValueError(
                f"Unknown `man_head`. Expected one of {ll.MAN_HEADS}. "
                f"Received: man_head={man_head!r}"
            )
        if man_head != "dgl" and auxiliary != "man":
            raise ValueError(
                "`man_head` chooses the head of MAN's auxiliary networks. "
                f"Received: man_head={man_head!r} with auxiliary="
                f"{auxiliary!r}. Use auxiliary='man' or drop `man_head`."
            )
        uses_infopro = _trains_with_infopro(auxiliary, man_head)
        lambdas = _infopro_lambdas(infopro_lambdas)
        if infopro_reconstruction not in ll.RECONSTRUCTION_LOSSES:
            raise ValueError(
                "Unknown `infopro_reconstruction`. Expected one of "
                f"{ll.RECONSTRUCTION_LOSSES}. Received: "
                f"infopro_reconstruction={infopro_reconstruction!r}"
            )
        input_mean, input_std = _input_statistics(
            infopro_input_mean, infopro_input_std
        )
        if not uses_infopro and (
            infopro_reconstruction != "mse" or input_mean is not None
        ):
            raise ValueError(
                "`infopro_reconstruction` and `infopro_input_mean`/`std` "
                "configure InfoPro's decoder. Received: auxiliary="
                f"{auxiliary!r} with infopro_reconstruction="
                f"{infopro_reconstruction!r}, infopro_input_mean="
                f"{infopro_input_mean!r}. Use auxiliary='infopro' (or "
                "auxiliary='man' with man_head='infopro') or drop them."
            )
        if infopro_target is not None and (
            not uses_infopro or not isinstance(infopro_target, str)
        ):
            raise ValueError(
                "`infopro_target` names the input InfoPro's decoder "
                "reconstructs: a string, with auxiliary='infopro' (or "
                "auxiliary='man' with man_head='infopro'). Received: "
                f"infopro_target={infopro_target!r} with auxiliary="
                f"{auxiliary!r}, man_head={man_head!r}."
            )
        if (isinstance(auxiliary_depth, bool)
                or not isinstance(auxiliary_depth, (int, np.integer))
                or auxiliary_depth < 1):
            raise ValueError(
                "`auxiliary_depth` (AugLocal's largest number of copied "
                "units) must be an integer >= 1. Received: "
                f"auxiliary_depth={auxiliary_depth!r}"
            )
        if (isinstance(pyramid_coefficient, bool)
                or not isinstance(pyramid_coefficient,
                                  (int, float, np.integer, np.floating))
                or not 0.0 <= float(pyramid_coefficient) <= 1.0):
            raise ValueError(
                "`pyramid_coefficient` (how fast AugLocal's depth shrinks "
                "with k) must be a number in [0, 1]. Received: "
                f"pyramid_coefficient={pyramid_coefficient!r}"
            )
        if not 0.0 <= float(momentum) < 1.0:
            raise ValueError(
                f"`momentum` must be in [0, 1). Received: momentum={momentum}"
            )
        self.network = network
        self.num_modules = None if num_modules is None else int(num_modules)
        self.cuts = cuts
        self.auxiliary = auxiliary
        self.auxiliary_depth = int(auxiliary_depth)
        self.pyramid_coefficient = float(pyramid_coefficient)
        self.infopro_lambdas = lambdas
        self.infopro_reconstruction = infopro_reconstruction
        self.infopro_input_mean = input_mean
        self.infopro_input_std = input_std
        self.infopro_target = infopro_target
        self.man_head = man_head
        self.momentum = float(momentum)
        self.remat = bool(remat)
        self._graph = None
        self.auxiliary_networks = []
        if _known_input_shape(network) is not None:
            self._split(_known_input_shape(network))

    # ------------------------------------------------------------------ #
    # Splitting.
    # ------------------------------------------------------------------ #
    @staticmethod
    def split_points_of(model):
        """Names of the layers after which `model` can be cut (a single
        tensor crosses the boundary)."""
        return [name for name, _, _ in _legal_points(_as_graph(model))]

    def split_points(self):
        """Names of the layers after which the network can be cut."""
        if self._graph is None:
            raise ValueError(
                "The network has no known input shape yet. Build the model "
                "first (`model.build(input_shape)`) or give the network an "
                "`Input`."
            )
        return [name for name, _, _ in self._points]

    def _split(self, input_shape):
        if self._graph is not None:
            return
        graph = _as_graph(self.network, input_shape)
        if len(graph.outputs) != 1:
            raise ValueError(
                "LocalLossModel needs a network with one output (the last "
                "module is trained by the compiled loss on it). Received: "
                f"{len(graph.outputs)} outputs."
            )
        input_names = [t.name for t in graph.inputs]
        if self._uses_infopro and self.infopro_target is None and len(input_names) > 1:
            raise ValueError(
                "InfoPro's decoder reconstructs one of the network's inputs; "
                f"this network has {len(input_names)}: {input_names}. "
                "Received: infopro_target=None. Pass "
                "`infopro_target=<input name>` (e.g. the image input)."
            )
        if self.infopro_target is not None and self.infopro_target not in input_names:
            raise ValueError(
                "`infopro_target` must name one of the network's inputs "
                f"{input_names}. Received: infopro_target={self.infopro_target!r}"
            )
        points = _legal_points(graph)
        names = [p[0] for p in points]
        if self.cuts is not None:
            chosen = []
            for name in self.cuts:
                if name not in names:
                    raise ValueError(_illegal_cut_message(graph, name, names))
                chosen.append(names.index(name))
            if chosen != sorted(set(chosen)):
                raise ValueError(
                    "`cuts` must be distinct and in network order. Received: "
                    f"cuts={self.cuts}; legal split points in order: {names}"
                )
        else:
            k = self.num_modules if self.num_modules is not None else len(names) + 1
            if k - 1 > len(names):
                raise ValueError(
                    f"num_modules={k} needs {k - 1} split points, but the "
                    f"network has only {len(names)} legal ones (layers a "
                    f"single tensor leaves): {names}. Expected num_modules "
                    f"<= {len(names) + 1}."
                )
            chosen = _balanced_cuts(points, _weighted_layers(graph), k)
        self._graph = graph
        self._points = points
        self.cuts = [names[i] for i in chosen]
        self.num_modules = len(chosen) + 1
        # The first module takes every input; a cut is crossed by one tensor.
        first = (
            graph.inputs[0] if len(graph.inputs) == 1
            else input_structure(graph)
        )
        tensors = [first] + [points[i][1] for i in chosen] + [graph.outputs[0]]
        self._module_list = _Untracked(
            [
                keras.Model(tensors[j], tensors[j + 1], name=f"module_{j}")
                for j in range(self.num_modules)
            ]
        )
        self._cut_tensors = _Untracked(tensors)
        self._cut_positions = _Untracked(chosen)

    @property
    def _uses_infopro(self):
        """Whether the auxiliary networks end in InfoPro's classifier and
        decoder (and train with InfoPro's loss)."""
        return _trains_with_infopro(self.auxiliary, self.man_head)

    @property
    def modules(self):
        """The K modules: `keras.Model`s sharing the network's layers."""
        return list(self._module_list.value)

    # ------------------------------------------------------------------ #
    # Auxiliary networks.
    # ------------------------------------------------------------------ #
    def build(self, input_shape):
        input_shape = tuple(input_shape)
        self._split(input_shape)
        self._input_shape_ = input_shape
        if not self.auxiliary_networks and self.num_modules > 1:
            nets = [
                self._make_auxiliary(k) for k in range(self.num_modules - 1)
            ]
            self.auxiliary_networks = nets
            if self.auxiliary == "man":
                self._set_man_sources()
                for k in range(self.num_modules - 1):
                    for src, dst in self._ema_pairs(k):
                        dst.assign(np.array(ops.convert_to_numpy(src)))
        self._refresh_trackers()
        self.built = True

    @no_automatic_dependency_tracking
    def _refresh_trackers(self):
        # A list of blocks learns its module count at build, possibly after
        # `compile` created the log trackers.
        if self.compiled and set(self._local_trackers) != set(
            self.local_log_names()
        ):
            self._local_trackers = {
                name: keras.metrics.Mean(name=name)
                for name in self.local_log_names()
            }

    def _output_activation(self):
        out = self._graph.outputs[0]
        layer = out._keras_history[0]
        act = getattr(layer, "activation", None)
        name = getattr(act, "__name__", None)
        return name if name in ("softmax", "sigmoid") else None

    def _head(self, h, k):
        """The small DGL-style classifier: for feature maps a 3x3 conv with
        the module's width + ReLU (stride 2 while the map is larger than
        8x8, as in InfoPro's head), global average pooling, the output
        layer; for sequences, pooling then the output layer; for vectors,
        the output layer alone.

        The stride keeps the head's activations a quarter of the module
        output's, which is what lets a local step need less memory than
        backprop checkpointed at the same boundaries (ResNet-32, K=16:
        70.8 MiB against 96.2; at stride 1, 95.8).

        DGL's own CIFAR head (pooling by 4 first, three 1x1 conv + BN +
        ReLU, pooling to 2x2, an MLP) learned far more slowly on small CNNs
        here (0.18-0.26 test accuracy after 8 epochs on 2,000 CIFAR-10
        images, against 0.25-0.30 after 5 with a 3x3 conv head), so it is
        not the default."""
        n = self._graph.outputs[0].shape[-1]
        act = self._output_activation()
        if len(h.shape) == 4:
            h = keras.layers.Conv2D(
                h.shape[-1], 3, strides=_head_stride(h), padding="same",
                activation="relu", name=f"aux{k}_conv",
            )(h)
            h = keras.layers.GlobalAveragePooling2D(name=f"aux{k}_pool")(h)
        elif len(h.shape) == 3:
            h = keras.layers.GlobalAveragePooling1D(name=f"aux{k}_pool")(h)
        elif len(h.shape) != 2:
            h = keras.layers.Flatten(name=f"aux{k}_flatten")(h)
        return keras.layers.Dense(n, activation=act, name=f"aux{k}_dense")(h)

    def _infopro_head(self, h, k):
        """InfoPro's classifier (Wang et al. 2021, "1c2f"): a 3x3 conv + BN +
        ReLU, with stride 2 and twice the channels while the map is larger
        than 8x8, global pooling, a 128-unit hidden layer, the output."""
        n = self._graph.outputs[0].shape[-1]
        act = self._output_activation()
        if len(h.shape) != 4 or None in h.shape[1:]:
            return self._head(h, k)
        channels = h.shape[-1]
        stride = _head_stride(h)
        h = _conv_bn_relu(h, channels * stride, 3, stride, f"aux{k}_conv")
        h = keras.layers.GlobalAveragePooling2D(name=f"aux{k}_gap")(h)
        h = keras.layers.Dense(128, activation="relu", name=f"aux{k}_hidden")(h)
        return keras.layers.Dense(n, activation=act, name=f"aux{k}_dense")(h)

    def _infopro_decoder(self, h, k):
        """InfoPro's decoder: the features resized (bilinear) to the input's
        resolution, a 3x3 conv to 12 channels + BN + ReLU, a 3x3 conv to the
        input's channels. The resize and the first conv run as one
        `ResizingConv2D` (the same function), so the enlarged features are
        never formed."""
        target = self._graph.inputs[self._infopro_target_index()]
        if len(target.shape) == 4 and len(h.shape) == 4:
            size = tuple(target.shape[1:3])
            if tuple(h.shape[1:3]) == size:
                h = _conv_bn_relu(h, 12, 3, 1, f"aux{k}_decoder_hidden")
            elif all(a <= b for a, b in zip(h.shape[1:3], size)):
                # The same resize + conv, without the resized features.
                name = f"aux{k}_decoder_hidden"
                h = ResizingConv2D(12, 3, height=size[0], width=size[1],
                                   use_bias=False, name=name)(h)
                h = keras.layers.BatchNormalization(name=name + "_bn")(h)
                h = keras.layers.ReLU(name=name + "_relu")(h)
            else:
                h = keras.layers.Resizing(*size, name=f"aux{k}_resize")(h)
                h = _conv_bn_relu(h, 12, 3, 1, f"aux{k}_decoder_hidden")
            return keras.layers.Conv2D(
                target.shape[-1], 3, padding="same", name=f"aux{k}_decoder"
            )(h)
        h = keras.layers.Flatten(name=f"aux{k}_dflat")(h)
        h = keras.layers.Dense(
            int(np.prod(target.shape[1:])), name=f"aux{k}_decoder"
        )(h)
        return keras.layers.Reshape(
            tuple(target.shape[1:]), name=f"aux{k}_reshape"
        )(h)

    def _make_auxiliary(self, k):
        feature = self._cut_tensors.value[k + 1]
        inp = keras.Input(tuple(feature.shape[1:]), name=f"aux{k}_input")
        if callable(self.auxiliary):
            layer = self.auxiliary(
                k, tuple(feature.shape), tuple(self._graph.outputs[0].shape)
            )
            return keras.Model(inp, layer(inp), name=f"auxiliary_{k}")
        if self.auxiliary == "dgl":
            out = self._head(inp, k)
        elif self.auxiliary == "infopro":
            out = [self._infopro_head(inp, k), self._infopro_decoder(inp, k)]
        elif self.auxiliary == "auglocal":
            out = self._auglocal_body(inp, k)
        else:  # man
            out = self._man_body(inp, k)
        return keras.Model(inp, out, name=f"auxiliary_{k}")

    def _man_body(self, inp, k):
        """MAN's auxiliary network: the next layer (the first AugLocal unit
        after module k, e.g. the next residual block) twice, summed: a
        momentum copy whose weights follow that layer's (non-trainable,
        BatchNorm on batch statistics) and a trainable, freshly
        initialised copy, the "learnable bias"; then the head `man_head`
        names. Where the next layer is the network's head, the two copies'
        pre-activation outputs are summed and the output activation applied
        (InfoPro's decoder then reads the module's output)."""
        unit, is_head = self._next_unit(k)
        act = self._output_activation() if is_head else None
        momentum_copy = _clone_unit(
            unit, f"aux{k}_momentum", frozen=True, linear_output=bool(act)
        )
        momentum_copy.trainable = False
        bias_copy = _clone_unit(
            unit, f"aux{k}_learnable_bias", frozen=False,
            linear_output=bool(act),
        )
        h = keras.layers.Add(name=f"aux{k}_sum")(
            [bias_copy(inp), momentum_copy(inp)]
        )
        if not is_head:
            if self.man_head == "infopro":
                return [self._infopro_head(h, k), self._infopro_decoder(h, k)]
            return self._head(h, k)
        if act:
            h = keras.layers.Activation(act, name=f"aux{k}_activation")(h)
        if self.man_head == "infopro":
            return [h, self._infopro_decoder(inp, k)]
        return h

    def auglocal_units(self, k):
        """The later layers of module k as AugLocal counts them: sub-models
        of the network after module k, each a part with a kernel (a weight
        of rank >= 2: a convolution, a dense layer, a residual block) and
        the kernel-less parts after it (activation, pooling). The last one
        is the network's head."""
        tensors, bounds = self._auglocal_unit_bounds(k)
        return [keras.Model(tensors[a], tensors[b]) for a, b in bounds]

    def _auglocal_unit_bounds(self, k, kernel_counts=None):
        """The boundary tensors after module k and, for each AugLocal unit,
        the (first, last) indices into them (no sub-model is built).
        `kernel_counts` is `_kernel_counts(self._graph)` where the caller
        already has it."""
        points = self._points
        start = self._cut_positions.value[k]
        counts, total = kernel_counts or _kernel_counts(self._graph)
        tensors = [points[i][1] for i in range(start, len(points))]
        tensors.append(self._graph.outputs[0])
        # Kernels from the input up to each boundary after module k.
        upto = [counts[id(t)] for t in tensors[:-1]] + [total]
        # A unit starts at each kernel but the first after the cut.
        starts = [
            j for j in range(1, len(tensors) - 1)
            if upto[j + 1] > upto[j] > upto[0]
        ]
        ends = [0] + starts + [len(tensors) - 1]
        return tensors, list(zip(ends, ends[1:]))

    def auglocal_selection(self, k):
        """Indices (into `auglocal_units(k)`) of the units copied into module
        k's AugLocal auxiliary network: its pyramidal depth of units chosen
        uniformly among those before the head, then the head (the last
        unit: AugLocal ends with pooling and a classifier)."""
        # The units before the head.
        kernel_counts = _kernel_counts(self._graph)
        later = len(self._auglocal_unit_bounds(k, kernel_counts)[1]) - 1
        counts, _ = kernel_counts
        cut = self._points[self._cut_positions.value[k]][1]
        position = counts[id(cut)] - 1  # the module's last layer's index
        depth = ll.auglocal_depth(k, self.num_modules, self.auxiliary_depth,
                                  self.pyramid_coefficient)
        return ll.uniform_selection(later, depth, position) + [later]

    def _auglocal_body(self, inp, k):
        units = self.auglocal_units(k)
        selection = self.auglocal_selection(k)
        depth = ll.auglocal_depth(k, self.num_modules, self.auxiliary_depth,
                                  self.pyramid_coefficient)
        h = inp
        for j, i in enumerate(selection):
            unit = units[i]
            want = tuple(unit.inputs[0].shape)
            h = _adapt(h, want, f"aux{k}_adapt{j}")
            if i == len(units) - 1 and depth <= 1:
                # At depth 1 AugLocal normalises the features its
                # classifier reads.
                h = keras.layers.BatchNormalization(name=f"aux{k}_head_bn")(h)
            copy = keras.models.clone_model(unit)
            copy.name = f"aux{k}_unit{j}"
            h = copy(h)
        return h

    def _next_unit(self, k):
        """The first AugLocal unit after module k (a sub-model sharing the
        network's layers) and whether it is the network's head."""
        tensors, bounds = self._auglocal_unit_bounds(k)
        a, b = bounds[0]
        return keras.Model(tensors[a], tensors[b]), len(bounds) == 1

    def _set_man_sources(self):
        self._man_sources = _Untracked([
            self._next_unit(k)[0].weights for k in range(self.num_modules - 1)
        ])

    def _ema_pairs(self, k):
        """(trainable variable of the layer after module k, its momentum
        copy) pairs. Like MAN's reference, only the weights the optimizer
        trains are averaged; the copy's BatchNorm normalises with batch
        statistics, so its moving statistics are not used."""
        src = self._man_sources.value[k]
        copy = self.auxiliary_networks[k].get_layer(f"aux{k}_momentum")
        pairs = [(s, d) for s, d in zip(src, copy.weights) if s.trainable]
        if len(src) != len(copy.weights) or any(
            tuple(s.shape) != tuple(d.shape) for s, d in pairs
        ):
            raise RuntimeError(
                f"MAN's momentum copy of module {k}'s next layer does not "
                f"match it: {len(copy.weights)} weights for {len(src)}."
            )
        return pairs

    # ------------------------------------------------------------------ #
    def call(self, x, training=False):
        return self._graph(x, training=training)

    def compute_output_shape(self, input_shape):
        return tuple(self._graph.outputs[0].shape)

    def inference_model(self):
        """The network alone (no auxiliary parts), with the trained weights:
        a plain `keras.Model` that saves and loads as usual."""
        if isinstance(self.network, keras.Sequential) or self._graph is None:
            return self.network
        return self._graph

    def export(self, filepath, format="tf_saved_model", verbose=None,
               input_signature=None, **kwargs):
        """Exports `inference_model()`, the network alone, for serving.

        The auxiliary networks only serve training. Arguments as
        `keras.Model.export` (every format; on PyTorch, exporting the
        wrapper itself fails because it shares the network's weights).
        """
        check_exportable(self)
        return self.inference_model().export(
            filepath, format=format, verbose=verbose,
            input_signature=input_signature, **kwargs
        )

    def _regularized_network(self):
        # The auxiliary networks' regularisers are not part of the network.
        return self.inference_model()

    # ------------------------------------------------------------------ #
    # The rule.
    # ------------------------------------------------------------------ #
    def gradient_groups(self):
        # Module k and its auxiliary network learn from module k's loss.
        modules = self._module_list.value
        auxiliaries = list(self.auxiliary_networks) + [None]
        return [
            [module] + ([] if aux is None else [aux])
            for module, aux in zip(modules, auxiliaries)
        ]

    def local_log_names(self):
        k = self.num_modules or 0
        return [f"module_{i}_loss" for i in range(k)]

    def _local_loss(self, y, prediction, sample_weight):
        if self._compile_loss is None:
            raise ValueError(
                "LocalLossModel trains every module with the compiled loss. "
                "Received: compile() without a loss. Pass e.g. "
                "`loss='sparse_categorical_crossentropy'`."
            )
        return self.compiled_loss(y, prediction, sample_weight)  # in loss_dtype()

    def local_grads(
        self, trainable_values, non_trainable_values, x, y, sample_weight
    ):
        tv, ntv = list(trainable_values), list(non_trainable_values)
        x = _float_input(x)
        grads = [ops.zeros_like(v) for v in tv]
        new_ntv = list(ntv)
        total = ops.convert_to_tensor(0.0, dtype=loss_dtype())
        logs = {}
        h = x
        y_pred = None
        last = self.num_modules - 1
        for k, module in enumerate(self._module_list.value):
            m_t = self.variable_indices(module, trainable=True)
            m_n = self.variable_indices(module, trainable=False)
            aux = None if k == last else self.auxiliary_networks[k]
            a_t = [] if aux is None else self.variable_indices(aux, True)
            a_n = [] if aux is None else self.variable_indices(aux, False)

            def module_loss(params, h, m_ntv, a_ntv, module=module, aux=aux,
                            n_m=len(m_t), k=k):
                out, new_m_ntv, losses = module.stateless_call(
                    params[:n_m], m_ntv, h, training=True, return_losses=True
                )
                reg = sum_losses(losses)
                if aux is None:
                    loss = self._local_loss(y, out, sample_weight)
                    return loss + reg, (out, out, new_m_ntv, a_ntv)
                loss, new_a_ntv = self._auxiliary_loss(
                    k, aux, params[n_m:], a_ntv, out, x, y, sample_weight
                )
                return loss + reg, (out, out, new_m_ntv, new_a_ntv)

            params = self.gather(tv, m_t) + self.gather(tv, a_t)
            if self.remat and k != last:
                loss, h, g, m_ntv, a_ntv = self._rematerialized_module(
                    k, module, aux, params, len(m_t), h, self.gather(ntv, m_n),
                    self.gather(ntv, a_n), x, y, sample_weight,
                )
            else:
                (loss, (h, out, m_ntv, a_ntv)), g = backend.value_and_grad(
                    module_loss, has_aux=True
                )(params, h, self.gather(ntv, m_n), self.gather(ntv, a_n))
            if k != last:
                # The next module's forward waits for this module's
                # gradients (`after`), and its input is materialised once
                # (`barrier`): without the barrier XLA fuses the residual
                # stream's elementwise chain into later modules and
                # recomputes it there, keeping every earlier module's
                # convolution outputs alive until the end of the stage.
                h, g, m_ntv, a_ntv = backend.barrier(
                    (after(h, g), list(g), list(m_ntv), list(a_ntv))
                )
            grads = self.scatter(grads, m_t + a_t, g)
            new_ntv = self.scatter(new_ntv, m_n + a_n, list(m_ntv) + list(a_ntv))
            total = total + ops.cast(loss, loss_dtype())
            logs[f"module_{k}_loss"] = loss
            if k == last:
                y_pred = out
        if self.auxiliary == "man":
            new_ntv = self._man_update(tv, ntv, new_ntv)
        return grads, new_ntv, total, y_pred, logs

    def _auxiliary_loss(self, k, aux, params, a_ntv, out, x, y,
                        sample_weight):
        aux_out, new_a_ntv, losses = aux.stateless_call(
            params, a_ntv, out, training=True, return_losses=True
        )
        if self._uses_infopro:
            pred, rec = aux_out
            loss = ll.infopro_loss(
                rec, self._reconstruction_target(x),
                self._local_loss(y, pred, sample_weight),
                *self.module_infopro_lambdas(k),
                reconstruction_loss=self.infopro_reconstruction,
                sample_weight=sample_weight,
            )
        else:
            loss = self._local_loss(y, aux_out, sample_weight)
        return loss + sum_losses(losses), new_a_ntv

    def module_infopro_lambdas(self, k):
        """`(lambda_reconstruction, lambda_class)` of module `k`'s InfoPro
        loss."""
        lambdas = self.infopro_lambdas
        if not isinstance(lambdas[0], tuple):
            return lambdas
        return ll.infopro_module_lambdas(k, self.num_modules, *lambdas)

    def _infopro_target_index(self):
        if self.infopro_target is None:
            return 0
        return [t.name for t in self._graph.inputs].index(self.infopro_target)

    def _reconstruction_target(self, x):
        if isinstance(x, dict):
            x = x[self.infopro_target]
        elif isinstance(x, (list, tuple)):
            x = x[self._infopro_target_index()]
        if self.infopro_input_mean is None:
            return x
        mean = np.asarray(self.infopro_input_mean, "float32")
        std = np.asarray(self.infopro_input_std, "float32")
        for name, v in (("mean", mean), ("std", std)):
            if v.size not in (1, x.shape[-1]):
                raise ValueError(
                    f"`infopro_input_{name}` needs one value or one per "
                    f"channel ({x.shape[-1]} here). Received {v.size} values: "
                    f"{v.tolist()}"
                )
        return ops.cast(x, "float32") * std + mean

    def _rematerialized_module(self, k, module, aux, params, n_m, h, m_ntv,
                               a_ntv, x, y, sample_weight):
        """`(loss, output, grads, new module state, new auxiliary state)`
        of one module with `remat=True`: forward without keeping
        activations, the auxiliary loss's gradient at the output, then the
        module run again from the same state (same dropout masks and batch
        statistics) and that gradient pulled back through it."""
        out, new_m_ntv = module.stateless_call(
            params[:n_m], m_ntv, h, training=True
        )
        out = backend.barrier(backend.stop_gradient(out))

        def auxiliary_loss(values, a_ntv):
            return self._auxiliary_loss(
                k, aux, values[:-1], a_ntv, values[-1], x, y, sample_weight
            )

        (loss, new_a_ntv), g = backend.value_and_grad(
            auxiliary_loss, has_aux=True
        )(list(params[n_m:]) + [out], a_ntv)
        a_grads, cotangent = list(g[:-1]), g[-1]
        # The recomputation waits for the cotangent, so XLA neither merges
        # it with the first forward pass nor runs it before the auxiliary
        # network's backward.
        h_in, cotangent = backend.barrier((after(h, cotangent), cotangent))

        def pulled_back(values, cotangent):
            again, _, losses = module.stateless_call(
                values, m_ntv, h_in, training=True, return_losses=True
            )
            reg = sum_losses(losses)
            dot = ops.sum(ops.cast(again, loss_dtype())
                          * ops.cast(cotangent, loss_dtype()))
            return dot + reg, reg

        (_, reg), m_grads = backend.value_and_grad(pulled_back, has_aux=True)(
            list(params[:n_m]), cotangent
        )
        return (loss + reg, out, list(m_grads) + a_grads, new_m_ntv,
                new_a_ntv)

    def _man_update(self, tv, ntv, new_ntv):
        t_pos = {id(v): i for i, v in enumerate(self.trainable_variables)}
        n_pos = {id(v): i for i, v in enumerate(self.non_trainable_variables)}
        for k in range(self.num_modules - 1):
            for src, dst in self._ema_pairs(k):
                if id(src) in t_pos:
                    value = tv[t_pos[id(src)]]
                else:
                    value = new_ntv[n_pos[id(src)]]
                i = n_pos[id(dst)]
                new_ntv[i] = ll.ema_update(ntv[i], value, self.momentum)
        return new_ntv

    # ------------------------------------------------------------------ #
    def validate_data(self, x, y=None, sample_weight=None):
        inputs = 1 if self._graph is None else len(self._graph.inputs)
        given = len(x) if isinstance(x, (list, tuple, dict)) else 1
        if isinstance(x, (list, tuple, dict)) and inputs == 1:
            raise ValueError(
                "LocalLossModel's network takes a single input array. "
                f"Received: x of type {type(x).__name__} with {given} items."
            )
        if given != inputs:
            names = [t.name for t in self._graph.inputs]
            raise ValueError(
                f"The network takes {inputs} inputs {names}. Received: "
                f"{given} input array(s). Pass a list in that order or a "
                "dict keyed by input name."
            )
        super().validate_data(x, y, sample_weight)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_modules": self.num_modules,
                "cuts": self.cuts,
                "auxiliary_depth": self.auxiliary_depth,
                "pyramid_coefficient": self.pyramid_coefficient,
                "infopro_lambdas": _as_lists(self.infopro_lambdas),
                "infopro_reconstruction": self.infopro_reconstruction,
                "infopro_input_mean": self.infopro_input_mean,
                "infopro_input_std": self.infopro_input_std,
                "infopro_target": self.infopro_target,
                "man_head": self.man_head,
                "momentum": self.momentum,
                "remat": self.remat,
            }
        )
        return config


# ---------------------------------------------------------------------- #
class _BatchStatisticsNormalization(keras.layers.BatchNormalization):
    """BatchNormalization for MAN's momentum copy, whose weights are set
    from outside: in training it normalises with the batch's statistics,
    frozen or not (a frozen Keras BatchNormalization would use its moving
    statistics), as the reference's copy does in PyTorch's train mode. It
    updates no moving statistics."""

    def call(self, inputs, training=None, mask=None):
        if not training or self.trainable or mask is not None or self.renorm:
            return super().call(inputs, training=training, mask=mask)
        dtype = keras.backend.result_type(inputs.dtype, "float32")
        x = ops.cast(inputs, dtype)
        axis = self.axis % len(x.shape)
        axes = [i for i in range(len(x.shape)) if i != axis]
        mean, variance = ops.moments(x, axes=axes)
        out = ops.batch_normalization(
            x, mean, variance, axis=axis,
            offset=ops.cast(self.beta, dtype) if self.center else None,
            scale=ops.cast(self.gamma, dtype) if self.scale else None,
            epsilon=self.epsilon,
        )
        return ops.cast(out, self.compute_dtype)


def _clone_unit(unit, name, frozen, linear_output):
    """A freshly initialised copy of `unit` (a sub-model of the network).
    `frozen`: its BatchNormalization layers use batch statistics in training
    even when not trainable. `linear_output`: the layer making the unit's
    output loses its activation (MAN's two copies of the network's head are
    summed before it)."""
    out_layer = unit.outputs[0]._keras_history[0]

    def clone(layer):
        config = layer.get_config()
        if linear_output and layer is out_layer:
            config["activation"] = "linear"
        if frozen and type(layer) is keras.layers.BatchNormalization:
            return _BatchStatisticsNormalization.from_config(config)
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(unit, clone_function=clone, recursive=True)
    copy.name = name
    return copy


def _trains_with_infopro(auxiliary, man_head):
    """InfoPro's classifier, decoder and loss: InfoPro itself, or MAN with
    InfoPro's head."""
    return auxiliary == "infopro" or man_head == "infopro"


def _infopro_lambdas(value):
    """`(l1, l2)` or `((l1_first, l2_first), (l1_last, l2_last))` as
    tuples of floats; a `ValueError` otherwise."""
    def pair(v):
        v = tuple(v)
        if len(v) != 2:
            raise ValueError
        return tuple(float(e) for e in v)

    try:
        value = tuple(value)
        if len(value) == 2 and all(np.ndim(v) == 0 for v in value):
            return pair(value)
        if len(value) == 2:
            return (pair(value[0]), pair(value[1]))
        raise ValueError
    except (TypeError, ValueError):
        raise ValueError(
            "`infopro_lambdas` must be (lambda_reconstruction, lambda_class) "
            "or ((l1_first, l2_first), (l1_last, l2_last)). Received: "
            f"infopro_lambdas={value!r}"
        ) from None


def _input_statistics(mean, std):
    """`(mean, std)` as floats or lists of floats, both or neither."""
    if (mean is None) != (std is None):
        raise ValueError(
            "`infopro_input_mean` and `infopro_input_std` go together. "
            f"Received: infopro_input_mean={mean!r}, infopro_input_std={std!r}"
        )
    if mean is None:
        return None, None
    m = np.asarray(mean, "float32")
    s = np.asarray(std, "float32")
    if m.ndim > 1 or s.ndim > 1 or not np.all(s > 0):
        raise ValueError(
            "`infopro_input_mean`/`infopro_input_std` must be floats or one "
            "float per channel, with std > 0. Received: "
            f"infopro_input_mean={mean!r}, infopro_input_std={std!r}"
        )
    return m.tolist(), s.tolist()


def _as_lists(value):
    return [_as_lists(v) for v in value] if isinstance(value, tuple) else value


def _float_input(x):
    """The input (one array or several) as tensors, cast to float32 unless
    already floating."""

    def as_float(t):
        t = ops.convert_to_tensor(t)
        return t if "float" in str(t.dtype) else ops.cast(t, "float32")

    return keras.tree.map_structure(as_float, x)


def _known_input_shape(network):
    if isinstance(network, keras.Sequential):
        try:
            return tuple(network.inputs[0].shape)
        except (AttributeError, IndexError, ValueError, TypeError):
            return None
    return tuple(network.inputs[0].shape)


def _as_graph(network, input_shape=None):
    """A Functional graph of the network, nested functional models inlined
    (Sequential models are re-traced on a fresh `Input`; every layer is
    shared with the network)."""
    if isinstance(network, keras.Sequential):
        shape = input_shape or _known_input_shape(network)
        if shape is None:
            raise ValueError(
                "The network needs an input shape. Received: a Sequential "
                "model without an `Input`. Add `keras.Input(shape)` first or "
                "build the model."
            )
        inp = keras.Input(tuple(shape[1:]), name="network_input")
        h = inp
        for layer in network.layers:
            h = layer(h)
        return inlined(keras.Model(inp, h, name=network.name + "_graph"))
    return inlined(network)


def _linear_nodes(graph):
    nodes = []
    for depth in sorted(graph._nodes_by_depth, reverse=True):
        for node in graph._nodes_by_depth[depth]:
            if not isinstance(node.operation, keras.layers.InputLayer):
                nodes.append(node)
    return nodes


def _live_after(graph, nodes):
    """For each position i, the tensors alive after node i."""
    last_use = {}
    for i, node in enumerate(nodes):
        for t in node.input_tensors:
            last_use[id(t)] = i
    for t in graph.outputs:
        last_use[id(t)] = len(nodes)
    produced = [(t, -1) for t in graph.inputs]
    live = []
    for i, node in enumerate(nodes):
        produced += [(t, i) for t in node.output_tensors]
        live.append([t for t, _ in produced if last_use.get(id(t), -2) > i])
    return live


def _legal_points(graph):
    """[(layer name, output tensor, cost before it)] of legal cuts."""
    nodes = _linear_nodes(graph)
    live = _live_after(graph, nodes)
    points = []
    cost = 0
    for i, node in enumerate(nodes[:-1]):
        cost += 1 if _has_trainable_weights(node.operation) else 0
        alive = live[i]
        outs = node.output_tensors
        if len(outs) == 1 and len(alive) == 1 and alive[0] is outs[0]:
            points.append((node.operation.name, outs[0], cost))
    return points


def _kernel_counts(graph):
    """({id(tensor): layers with a kernel up to the one making it}, the
    network's total): AugLocal's count of layers."""
    counts, total = {}, 0
    for node in _linear_nodes(graph):
        weights = getattr(node.operation, "weights", None) or []
        total += 1 if any(len(w.shape) >= 2 for w in weights) else 0
        for t in node.output_tensors:
            counts[id(t)] = total
    return counts, total


def _weighted_layers(graph):
    """Number of layers with trainable weights: the balancing cost."""
    return sum(1 for node in _linear_nodes(graph) if _has_trainable_weights(node.operation))


def _has_trainable_weights(operation):
    # A functional graph also holds plain ops (`x + y` in ConvNeXt).
    return bool(getattr(operation, "trainable_weights", None))


def _illegal_cut_message(graph, name, names):
    nodes = _linear_nodes(graph)
    where = [i for i, n in enumerate(nodes) if n.operation.name == name]
    if not where:
        return (
            f"No layer named {name!r} in the network. Received: cut {name!r}. "
            f"Expected one of the legal split points: {names}"
        )
    live = _live_after(graph, nodes)[where[0]]
    crossing = [t._keras_history[0].name for t in live]
    return (
        f"The network cannot be cut after layer {name!r}: {len(live)} live "
        f"tensors cross that boundary (outputs of {crossing}), a module "
        f"boundary must be crossed by exactly one. Received: cut {name!r}. "
        f"Expected one of the legal split points: {names}"
    )


def _balanced_cuts(points, total, k):
    """K-1 split positions that balance the weighted layers per module.

    Minimises the sum of squared module sizes (in weighted layers) by
    dynamic programming, so no module is left nearly empty: a greedy split
    at the ideal running totals can leave the classifier alone in the last
    module. Ties go to the later point (after a block's activation rather
    than before it).
    """
    if k == 1:
        return []
    costs = [cost for _, _, cost in points]

    def preferred(option):  # least sum of squares, then the later cuts
        return option[0], [-p for p in option[1]]

    # best[i]: (sum of squares, cut positions) of the best split of the
    # layers before point i into the modules placed so far, the last
    # ending at point i (`None` where no split fits).
    best = [(c * c, (i,)) for i, c in enumerate(costs)]
    for _ in range(k - 2):
        best = [
            min(
                ((best[j][0] + (costs[i] - costs[j]) ** 2, best[j][1] + (i,))
                 for j in range(i) if best[j] is not None),
                key=preferred,
                default=None,
            )
            for i in range(len(costs))
        ]
    finals = [
        (b[0] + (total - costs[i]) ** 2, b[1])
        for i, b in enumerate(best) if b is not None
    ]
    return list(min(finals, key=preferred)[1])


def _head_stride(h):
    """2 while a feature map is larger than 8x8 (a head then downsamples,
    as InfoPro's does), else 1."""
    size = h.shape[1:3]
    return 2 if None not in size and min(size) > 8 else 1


def _conv_bn_relu(h, filters, kernel, stride, name):
    h = keras.layers.Conv2D(
        filters, kernel, strides=stride, padding="same", use_bias=False,
        name=name,
    )(h)
    h = keras.layers.BatchNormalization(name=name + "_bn")(h)
    return keras.layers.ReLU(name=name + "_relu")(h)


def _adapt(h, want, name):
    """Projects `h` to the input shape a copied unit expects."""
    have = tuple(h.shape)
    if have[1:] == tuple(want[1:]):
        return h
    if len(want) == 4 and len(have) == 4:
        stride = max(1, int(have[1] // max(want[1], 1)))
        return keras.layers.Conv2D(
            want[-1], 1, strides=stride, padding="same", name=name
        )(h)
    if len(want) == 2:
        if len(have) == 4:
            h = keras.layers.GlobalAveragePooling2D(name=name + "_pool")(h)
        elif len(have) == 3:
            h = keras.layers.GlobalAveragePooling1D(name=name + "_pool")(h)
        if tuple(h.shape[1:]) == tuple(want[1:]):
            return h
        return keras.layers.Dense(want[-1], name=name)(h)
    raise ValueError(
        f"AugLocal cannot feed features of shape {have} to a unit expecting "
        f"{tuple(want)}. Received: incompatible ranks. Use auxiliary='dgl' "
        "or a callable for this network."
    )
