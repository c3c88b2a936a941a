import numpy as np

from keras_local.api_export import keras_local_export


@keras_local_export
class SimulatedPhysicalSystem:
    """A simulated optical layer: a NumPy black box with noise and drift.

    Each input row `x` (`input_dim` values) sets the phases of a field,
    `exp(i * phase_scale * x)`; the field crosses a fixed random complex
    scattering medium `M` (`output_dim x input_dim`, like a multimode fibre
    or diffuser) and a camera measures the intensity
    `|M exp(i s x)|^2 / input_dim`, with multiplicative Gaussian measurement
    noise of relative size `noise`. With `drift > 0` the medium slowly
    rotates towards a second random medium: after `t` calls it is
    `cos(drift t) M + sin(drift t) M'`. Called on NumPy arrays, returns
    NumPy: wrap it in `BlackBox`. `digital_twin()` returns its
    differentiable, noiseless, drift-free Keras model.

    Args:
        input_dim: int. Defaults to `784`.
        output_dim: int. Defaults to `1000`.
        phase_scale: float. Defaults to `np.pi`.
        noise: float, relative measurement noise. Defaults to `0.01`.
        drift: float, rotation of the medium per call (radians). Defaults
            to `0.0`.
        seed: int, draws the media and the noise. Defaults to `0`.

    Returns:
        A callable `(batch, input_dim) -> (batch, output_dim)` on NumPy.

    Example:

    ```python
    system = keras_local.layers.SimulatedPhysicalSystem(784, 1000, noise=0.02, drift=1e-4)
    y = system(np.random.rand(8, 784).astype("float32"))
    ```

    References:
        - Momeni et al., "Backpropagation-free Training of Deep Physical
          Neural Networks", Science 2023.
    """

    def __init__(self, input_dim=784, output_dim=1000, phase_scale=np.pi,
                 noise=0.01, drift=0.0, seed=0):
        self.input_dim = int(input_dim)
        self.output_dim = int(output_dim)
        self.phase_scale = float(phase_scale)
        self.noise = float(noise)
        self.drift = float(drift)
        self.seed = int(seed)
        rng = np.random.default_rng(self.seed)
        shape = (self.input_dim, self.output_dim)
        scale = 1.0 / np.sqrt(2.0)
        self.real = (rng.standard_normal(shape) * scale).astype("float32")
        self.imag = (rng.standard_normal(shape) * scale).astype("float32")
        self.real_2 = (rng.standard_normal(shape) * scale).astype("float32")
        self.imag_2 = (rng.standard_normal(shape) * scale).astype("float32")
        self._noise_rng = np.random.default_rng(self.seed + 1)
        self.calls = 0

    def medium(self, t=None):
        """The medium `(real, imag)` at call count `t` (now by default)."""
        t = self.calls if t is None else t
        c, s = np.float32(np.cos(self.drift * t)), np.float32(np.sin(self.drift * t))
        return c * self.real + s * self.real_2, c * self.imag + s * self.imag_2

    def _transfer(self):
        """`[[Re M, Im M], [-Im M, Re M]]` at the current call count: maps
        `[cos, sin]` of the phases to `[Re, Im]` of the field in one
        float32 matrix product."""
        if getattr(self, "_blocks", None) is None:
            self._blocks = tuple(
                np.block([[re, im], [-im, re]]).astype("float32")
                for re, im in ((self.real, self.imag), (self.real_2, self.imag_2))
            )
        if self.drift == 0.0:
            return self._blocks[0]
        t = self.drift * self.calls
        return np.float32(np.cos(t)) * self._blocks[0] + np.float32(np.sin(t)) * self._blocks[1]

    def __call__(self, x):
        x = np.asarray(x, dtype="float32")
        if x.ndim != 2 or x.shape[1] != self.input_dim:
            raise ValueError(
                f"SimulatedPhysicalSystem expects (batch, {self.input_dim}). "
                f"Received: shape {x.shape}."
            )
        transfer = self._transfer()
        self.calls += 1
        phase = np.float32(self.phase_scale) * x
        # (a + ib)(cos + i sin) = (a cos - b sin) + i (a sin + b cos)
        field = np.concatenate([np.cos(phase), np.sin(phase)], axis=1) @ transfer
        intensity = field[:, : self.output_dim] ** 2 + field[:, self.output_dim :] ** 2
        intensity /= np.float32(self.input_dim)
        if self.noise:
            intensity *= 1.0 + np.float32(self.noise) * self._noise_rng.standard_normal(
                intensity.shape, dtype=np.float32
            )
        return intensity.astype("float32", copy=False)

    def digital_twin(self, **kwargs):
        """The differentiable noiseless, drift-free model, as a Keras layer."""
        from keras_local.layers.physical_system_twin import PhysicalSystemTwin

        return PhysicalSystemTwin(
            self.real, self.imag, self.phase_scale, self.input_dim, **kwargs
        )

    def get_config(self):
        return {
            "input_dim": self.input_dim, "output_dim": self.output_dim,
            "phase_scale": self.phase_scale, "noise": self.noise,
            "drift": self.drift, "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
