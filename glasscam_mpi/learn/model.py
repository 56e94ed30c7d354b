"""The CNN that tells glass from liquid (METHOD.md section 4, paper section 3.1).

Three convolutions, each followed by ReLU, with circular padding (the box is periodic) and
no pooling; strides shrink the grid so the fully connected part stays small. Then
flatten -> Linear(hidden) -> ReLU -> Dropout -> Linear(2). The output is two pre-softmax
logits; **class index 0 = liquid, 1 = glass** (:data:`LIQUID`, :data:`GLASS`).

Geometry: a convolution with odd kernel k, padding k // 2 and stride s maps an n-point
periodic grid to n / s points, output point j centred on input point j * s. With the
total stride S = s_1 s_2 s_3, feature point j of the last layer therefore sits at input
grid point j * S (coordinate j * S * h, the grid convention of
:mod:`glasscam_mpi.learn.grid`), and rolling the input by S * m cells rolls every
feature map of the last layer by m. :class:`ModelSpec` insists on odd kernels and on
n_grid divisible by S so that this holds exactly.
"""

from __future__ import annotations

import json
import math
import numbers
from dataclasses import asdict, dataclass, fields

import torch
from torch import nn

from glasscam_mpi.jsonio import dumps

LIQUID = 0
GLASS = 1
CLASS_NAMES = ("liquid", "glass")


@dataclass(frozen=True)
class ModelSpec:
    """Architecture of :class:`GlassCNN` (pure data; JSON round-trip via to/from_dict).

    Attributes:
        dim: Spatial dimension of the grid, 2 or 3.
        in_channels: Input channels (= number of species, channel s = species s).
        n_grid: Input grid points per axis.
        channels: Output channels of the three convolutions.
        kernels: Kernel sizes (odd) of the three convolutions.
        strides: Strides of the three convolutions; n_grid must be divisible by their
            product.
        hidden: Width of the hidden fully connected layer.
        dropout: Dropout probability before the output layer.
    """

    dim: int
    in_channels: int
    n_grid: int
    channels: tuple[int, ...] = (16, 32, 64)
    kernels: tuple[int, ...] = (5, 3, 3)
    strides: tuple[int, ...] = (2, 2, 2)
    hidden: int = 128
    dropout: float = 0.5

    def __post_init__(self) -> None:
        for name in ("channels", "kernels", "strides"):
            value = getattr(self, name)
            try:
                value = tuple(value)
            except TypeError:
                raise ValueError(f"ModelSpec.{name} must be three integers; "
                                 f"got {value!r}") from None
            if len(value) != 3 or any(isinstance(v, bool) or not isinstance(v, numbers.Integral)
                                      or v < 1 for v in value):
                raise ValueError(f"ModelSpec.{name} must be three integers >= 1 (one per "
                                 f"convolution); got {list(value)}")
            object.__setattr__(self, name, tuple(int(v) for v in value))
        if isinstance(self.dim, bool) or self.dim not in (2, 3):
            raise ValueError(f"ModelSpec.dim must be 2 or 3; got {self.dim!r}")
        object.__setattr__(self, "dim", int(self.dim))
        for name in ("in_channels", "n_grid", "hidden"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"ModelSpec.{name} must be an integer >= 1; got {value!r}")
            object.__setattr__(self, name, int(value))
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"ModelSpec.dropout must lie in [0, 1); got {self.dropout!r}")
        object.__setattr__(self, "dropout", float(self.dropout))
        if any(k % 2 == 0 for k in self.kernels):
            raise ValueError(f"ModelSpec.kernels must be odd (padding k // 2 keeps the grid "
                             f"centred); got {list(self.kernels)}")
        total = math.prod(self.strides)
        if self.n_grid % total:
            raise ValueError(
                f"ModelSpec.n_grid = {self.n_grid} is not divisible by the total stride "
                f"{total} = {' x '.join(map(str, self.strides))}; the feature grids would "
                f"not tile the periodic box. Use an n_grid that is a multiple of {total} "
                f"or smaller strides")
        size = self.n_grid
        for i, (k, s) in enumerate(zip(self.kernels, self.strides)):
            if k // 2 > size:
                raise ValueError(f"ModelSpec.kernels[{i}] = {k} needs circular padding "
                                 f"{k // 2} > its input grid of {size} points; use a smaller "
                                 f"kernel or a larger n_grid")
            size //= s

    @classmethod
    def for_grid(cls, grid_spec, **kwargs) -> ModelSpec:
        """The spec for inputs gridded with a :class:`~glasscam_mpi.learn.grid.GridSpec`."""
        return cls(dim=grid_spec.dim, in_channels=grid_spec.n_species,
                   n_grid=grid_spec.n_grid, **kwargs)

    @property
    def total_stride(self) -> int:
        """S = product of the strides: input cells per last-layer feature cell."""
        return math.prod(self.strides)

    def feature_size(self, layer: int) -> int:
        """Grid points per axis of the feature maps of convolution ``layer`` (0, 1, 2)."""
        layer = range(3)[layer]
        return self.n_grid // math.prod(self.strides[:layer + 1])

    def feature_shape(self, layer: int) -> tuple[int, ...]:
        """(channels, n_l, ..., n_l) of one sample's feature maps of ``layer``."""
        return (self.channels[layer],) + (self.feature_size(layer),) * self.dim

    @property
    def flat_size(self) -> int:
        """Inputs of the first fully connected layer: channels[-1] * (n_grid / S)^dim."""
        return math.prod(self.feature_shape(2))

    @property
    def input_shape(self) -> tuple[int, ...]:
        """(in_channels, n_grid, ..., n_grid) of one sample."""
        return (self.in_channels,) + (self.n_grid,) * self.dim

    def to_dict(self) -> dict:
        """Plain JSON-able dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def to_json(self) -> str:
        return dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> ModelSpec:
        """Inverse of :meth:`to_dict`; unknown or missing keys raise ValueError."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"ModelSpec.from_dict: unknown key(s) {sorted(unknown)}; "
                             f"allowed: {sorted(known)}")
        missing = {"dim", "in_channels", "n_grid"} - set(data)
        if missing:
            raise ValueError(f"ModelSpec.from_dict: missing key(s) {sorted(missing)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    @classmethod
    def from_json(cls, text: str) -> ModelSpec:
        return cls.from_dict(json.loads(text))


class GlassCNN(nn.Module):
    """Conv-ReLU x 3 (circular padding, no pooling) -> FC -> ReLU -> dropout -> FC(2).

    Input: (B, in_channels, n_grid, ..., n_grid) gridded configurations. Output: (B, 2)
    logits, index 0 = liquid, 1 = glass.
    """

    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.spec = spec
        conv = {2: nn.Conv2d, 3: nn.Conv3d}[spec.dim]
        c_in = (spec.in_channels,) + spec.channels[:-1]
        self.convs = nn.ModuleList(
            conv(ci, co, kernel_size=k, stride=s, padding=k // 2, padding_mode="circular")
            for ci, co, k, s in zip(c_in, spec.channels, spec.kernels, spec.strides))
        # per-channel standardisation of the input, (x - mean) / scale: set from the training
        # set by set_input_normalization(); buffers, so checkpoints carry them
        self.register_buffer("input_mean", torch.zeros(spec.in_channels))
        self.register_buffer("input_scale", torch.ones(spec.in_channels))
        self.fc1 = nn.Linear(spec.flat_size, spec.hidden)
        self.dropout = nn.Dropout(spec.dropout)
        self.fc2 = nn.Linear(spec.hidden, 2)

    @property
    def n_layers(self) -> int:
        return len(self.convs)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ValueError unless x is (B, in_channels, n_grid, ..., n_grid)."""
        want = self.spec.input_shape
        if x.dim() != len(want) + 1 or tuple(x.shape[1:]) != want:
            raise ValueError(f"input must have shape (B, {', '.join(map(str, want))}) for "
                             f"this model; got {tuple(x.shape)}")

    def set_input_normalization(self, mean, scale) -> None:
        """Standardise input channel c as (x_c - mean[c]) / scale[c] before the first
        convolution (the trainer passes the training set's per-channel mean and std)."""
        mean = torch.as_tensor(mean, dtype=self.input_mean.dtype).reshape(-1)
        scale = torch.as_tensor(scale, dtype=self.input_scale.dtype).reshape(-1)
        if mean.numel() != self.spec.in_channels or scale.numel() != self.spec.in_channels:
            raise ValueError(f"input normalization needs {self.spec.in_channels} means and "
                             f"scales (one per channel); got {mean.numel()} and {scale.numel()}")
        if not (torch.isfinite(mean).all() and torch.isfinite(scale).all() and (scale > 0).all()):
            raise ValueError(f"input normalization must be finite with scale > 0; got mean "
                             f"{mean.tolist()}, scale {scale.tolist()}")
        with torch.no_grad():
            self.input_mean.copy_(mean)
            self.input_scale.copy_(scale)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """The standardised input (an affine map per channel)."""
        shape = (1, -1) + (1,) * self.spec.dim
        return (x - self.input_mean.view(shape)) / self.input_scale.view(shape)

    def block(self, layer: int, a: torch.Tensor) -> torch.Tensor:
        """Convolution ``layer`` followed by its ReLU."""
        return torch.relu(self.convs[layer](a))

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The three post-ReLU feature maps, [(B, C_l, n_l, ...) for l = 0, 1, 2]."""
        self.check_input(x)
        x = self.normalize(x)
        out = []
        for layer in range(self.n_layers):
            x = self.block(layer, x)
            out.append(x)
        return out

    def head(self, a: torch.Tensor, dropout_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, 2) from the last feature maps (B, channels[-1], n / S, ...).

        ``dropout_mask`` (B, hidden) of 0/1, in training mode: the units to keep, instead of
        a fresh random draw (the trainer draws one mask per global mini-batch, so training
        does not depend on how the batch is split over ranks).
        """
        h = torch.relu(self.fc1(a.flatten(1)))
        if dropout_mask is None or not self.training or self.spec.dropout == 0.0:
            return self.fc2(self.dropout(h))
        if dropout_mask.shape != h.shape:
            raise ValueError(f"dropout_mask must have shape {tuple(h.shape)}; "
                             f"got {tuple(dropout_mask.shape)}")
        return self.fc2(h * dropout_mask.to(h.dtype) / (1.0 - self.spec.dropout))

    def forward(self, x: torch.Tensor, dropout_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.features(x)[-1], dropout_mask)


def build_model(spec: ModelSpec) -> GlassCNN:
    """A freshly initialised :class:`GlassCNN` for ``spec`` (torch's default init)."""
    return GlassCNN(spec)
