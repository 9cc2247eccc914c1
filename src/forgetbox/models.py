"""The paper's models and small ones for the embedded digits data, by name.

Every built-in model ends in an ``nn.Linear`` called ``classifier`` (the c-way head that is
re-initialised to form w0). :func:`head_name` finds the head of a user's own module.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import math
from collections.abc import Callable

import torch
from torch import nn


def _conv_bn(cin: int, cout: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    """Conv -> BatchNorm -> ReLU (BatchNorm before the non-linearity, as in the paper)."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=False),
    )


class AllCNN(nn.Module):
    """All-CNN-C (Springenberg et al. 2014) with BatchNorm, for 32x32 inputs.

    ``width`` multiplies the 96/192 filter counts (the paper's code uses 1.0 for All-CNN).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: float = 1.0):
        super().__init__()
        n1, n2 = max(1, int(96 * width)), max(1, int(192 * width))
        self.features = nn.Sequential(
            _conv_bn(in_channels, n1),
            _conv_bn(n1, n1),
            _conv_bn(n1, n2, stride=2),
            _conv_bn(n2, n2),
            _conv_bn(n2, n2),
            _conv_bn(n2, n2, stride=2),
            _conv_bn(n2, n2),
            _conv_bn(n2, n2, kernel=1),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.classifier = nn.Linear(n2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(n, classes)``."""
        return self.classifier(self.features(x))


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 in its CIFAR form (3x3 stem, no max-pool); ``width`` scales 64/128/256/512."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: float = 1.0):
        super().__init__()
        widths = [max(1, int(round(w * width))) for w in (64, 128, 256, 512)]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        layers, cin = [], widths[0]
        for i, w in enumerate(widths):
            stride = 1 if i == 0 else 2
            layers.append(nn.Sequential(_BasicBlock(cin, w, stride), _BasicBlock(w, w, 1)))
            cin = w
        self.layers = nn.Sequential(*layers)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(n, classes)``."""
        out = torch.relu(self.bn1(self.conv1(x)))
        return self.classifier(self.pool(self.layers(out)))


class SmallCNN(nn.Module):
    """A small BatchNorm CNN for 8x8 digits (about 14 k parameters at width 1)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: float = 1.0):
        super().__init__()
        n1, n2 = max(1, int(16 * width)), max(1, int(32 * width))
        self.features = nn.Sequential(
            _conv_bn(in_channels, n1),
            _conv_bn(n1, n2, stride=2),
            _conv_bn(n2, n2, stride=2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.classifier = nn.Linear(n2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(n, classes)``."""
        return self.classifier(self.features(x))


class MLP(nn.Module):
    """Two hidden tanh layers on flattened inputs (tanh keeps the model smooth for checks)."""

    def __init__(self, num_classes: int = 10, in_features: int = 64, width: float = 1.0):
        super().__init__()
        h = max(1, int(64 * width))
        self.features = nn.Sequential(
            nn.Flatten(), nn.Linear(in_features, h), nn.Tanh(), nn.Linear(h, h), nn.Tanh()
        )
        self.classifier = nn.Linear(h, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(n, classes)``."""
        return self.classifier(self.features(x))


class LinearModel(nn.Module):
    """Affine map of the flattened input; the NTK linearization is exact for it."""

    def __init__(self, num_classes: int = 10, in_features: int = 64, width: float = 1.0):
        super().__init__()
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(in_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(n, classes)``."""
        return self.classifier(self.flatten(x))


ModelFactory = Callable[..., nn.Module]

_IMAGE_MODELS: dict[str, ModelFactory] = {
    "allcnn": AllCNN,
    "resnet18": ResNet18,
    "smallcnn": SmallCNN,
}
_FLAT_MODELS: dict[str, ModelFactory] = {"mlp": MLP, "linear": LinearModel}
MODEL_NAMES = tuple(sorted({**_IMAGE_MODELS, **_FLAT_MODELS}))


def build_model(
    name: str,
    *,
    num_classes: int,
    input_shape: tuple[int, ...],
    width: float = 1.0,
    generator_seed: int | None = None,
) -> nn.Module:
    """Build a registered model, or ``"package.module:factory"`` for a user's own.

    ``input_shape`` is one sample's shape, e.g. ``(3, 32, 32)``. A user factory is called as
    ``factory(num_classes=..., input_shape=..., width=...)`` with the arguments it accepts.
    Weights are initialised from ``generator_seed`` when given (reproducible).
    """
    if not width > 0 or math.isinf(width):
        raise ValueError(f"width must be a positive finite number, got {width}")
    if name not in _IMAGE_MODELS and name not in _FLAT_MODELS and ":" not in name:
        raise ValueError(
            f"unknown model {name!r}: use one of {', '.join(MODEL_NAMES)} or 'module:function'"
        )
    with torch.random.fork_rng(devices=[]):  # seeded init without touching global RNG state
        if generator_seed is not None:
            torch.manual_seed(generator_seed)
        if name in _IMAGE_MODELS:
            return _IMAGE_MODELS[name](num_classes, input_shape[0], width)
        if name in _FLAT_MODELS:
            return _FLAT_MODELS[name](num_classes, math.prod(input_shape), width)
        return _user_factory(name)(num_classes=num_classes, input_shape=input_shape, width=width)


def _user_factory(spec: str) -> ModelFactory:
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import model module {module_name!r}: {exc}") from exc
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ValueError(f"{module_name!r} has no callable {attr!r}")

    def call(**kwargs):
        sig = inspect.signature(factory)
        accepts_all = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
        use = {k: v for k, v in kwargs.items() if accepts_all or k in sig.parameters}
        model = factory(**use)
        if not isinstance(model, nn.Module):
            raise ValueError(f"{spec} returned {type(model).__name__}, not an nn.Module")
        return model

    return call


def head_name(model: nn.Module) -> str:
    """Name of the classifier head: ``classifier`` if present, else the last ``nn.Linear``."""
    modules = dict(model.named_modules())
    if isinstance(modules.get("classifier"), nn.Linear):
        return "classifier"
    linears = [n for n, m in modules.items() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("model has no nn.Linear head to re-initialise")
    return linears[-1]


def with_new_head(model: nn.Module, num_classes: int, seed: int) -> nn.Module:
    """Copy of ``model`` whose head is a freshly initialised ``num_classes``-way ``nn.Linear``.

    This is w0 of the paper: the pre-trained backbone plus a new, seeded classifier.
    """
    new = copy.deepcopy(model)
    name = head_name(new)
    old = new.get_submodule(name)
    gen = torch.Generator().manual_seed(seed)
    head = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
    bound = 1.0 / max(1, old.in_features) ** 0.5
    with torch.no_grad():
        head.weight.uniform_(-bound, bound, generator=gen)
        if head.bias is not None:
            head.bias.uniform_(-bound, bound, generator=gen)
    parent_name, _, child = name.rpartition(".")
    parent = new.get_submodule(parent_name) if parent_name else new
    setattr(parent, child, head.to(old.weight.dtype))
    return new


def num_outputs(model: nn.Module) -> int:
    """Number of logits of the model's head."""
    return model.get_submodule(head_name(model)).out_features
