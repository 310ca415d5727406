"""The classifier: a torchvision ResNet with a new head, where its starting weights come from, what trains.

``--weights imagenet`` goes through torchvision's weights API, as every torchvision user expects: the
file is read from the torch hub cache, and fetched into it on first use when the machine is online.
Offline, the download fails within seconds and a one-line error names the file and where to put it.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

ARCHS = ("resnet50", "resnet34", "resnet18")
FREEZE_MODES = ("head", "layer4", "none")
HEAD_DROPOUT = 0.2
DOWNLOAD_TIMEOUT_S = 10  # a connection that makes no progress for this long counts as offline


class WeightsError(ValueError):
    """Starting weights that cannot be had (not in the hub cache, unreadable file, wrong shapes)."""


def _weights_enum(arch: str) -> Any:
    from torchvision import models
    return {"resnet50": models.ResNet50_Weights.IMAGENET1K_V2,
            "resnet34": models.ResNet34_Weights.IMAGENET1K_V1,
            "resnet18": models.ResNet18_Weights.IMAGENET1K_V1}[arch]


def imagenet_cache_path(arch: str) -> Path:
    """Where torchvision keeps ``arch``'s ImageNet weights: ``<torch.hub.get_dir()>/checkpoints/<file>``."""
    import torch
    url = _weights_enum(arch).url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def imagenet_state(arch: str) -> dict[str, Any]:
    """``arch``'s ImageNet state_dict from torchvision's weights API (``Weights.get_state_dict``):
    from the hub cache, downloaded into it when missing. Offline, a :class:`WeightsError` that names
    the file, its URL and the path to copy it to."""
    import socket
    enum = _weights_enum(arch)
    cached = imagenet_cache_path(arch)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        return enum.get_state_dict(progress=True, check_hash=True)
    except (OSError, RuntimeError, ValueError) as exc:  # URLError, timeouts, DNS, a bad hash
        raise WeightsError(
            f"ImageNet weights for {arch} are not in the torch hub cache and could not be downloaded "
            f"({type(exc).__name__}: {str(exc)[:120]}). Download {enum.url} on a machine with internet "
            f"and copy {os.path.basename(enum.url)} to {cached} (or set TORCH_HOME), pass --weights PATH "
            "to a local state_dict, or use --weights none --freeze none to train from scratch") from None
    finally:
        socket.setdefaulttimeout(previous)


def _check_arch(arch: str) -> None:
    if arch not in ARCHS:
        raise ValueError(f"architecture must be one of {ARCHS}, not {arch!r}")


def backbone_width(arch: str) -> int:
    """Size of the pooled feature vector the head sees."""
    _check_arch(arch)
    return 2048 if arch == "resnet50" else 512


def build_model(arch: str, n_classes: int, weights: str | os.PathLike | None = "none") -> Any:
    """A ResNet whose ``fc`` is ``Sequential(Dropout, Linear(width, n_classes))``.

    ``weights``: ``"none"``/None (random init), ``"imagenet"`` (:func:`imagenet_state`: the hub cache,
    downloaded when online; offline a :class:`WeightsError` says where to put the file), or a path to a local
    state_dict (or a maskprep-train checkpoint), loaded with ``torch.load(weights_only=True)``. A
    path whose head has another number of classes gives just the backbone.
    """
    from torch import nn
    from torchvision import models

    _check_arch(arch)
    model = getattr(models, arch)(weights=None)
    if weights in (None, "none"):
        pass
    elif weights == "imagenet":
        model.load_state_dict(imagenet_state(arch))
    model.fc = nn.Sequential(nn.Dropout(HEAD_DROPOUT), nn.Linear(model.fc.in_features, n_classes))
    if weights not in (None, "none", "imagenet"):
        state = _load_state(Path(weights))
        state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
        own = model.state_dict()
        head_ok = all(k in state and state[k].shape == own[k].shape for k in own if k.startswith("fc."))
        # A torchvision checkpoint has fc.weight (no Dropout), ours fc.1.weight: keep only the backbone
        # unless the head fits exactly.
        state = {k: v for k, v in state.items() if not k.startswith("fc.") or head_ok}
        missing = [k for k in own if k not in state and not k.startswith("fc.")]
        unexpected = [k for k in state if k not in own]
        wrong = [k for k in state if k in own and state[k].shape != own[k].shape]
        if missing or unexpected or wrong:
            raise WeightsError(f"{weights}: does not fit {arch} ({len(missing)} missing, "
                               f"{len(unexpected)} unexpected, {len(wrong)} wrongly shaped tensors, e.g. "
                               f"{(missing + unexpected + wrong)[:2]}); check --arch")
        model.load_state_dict(state, strict=False)
    return model


def _load_state(path: Path) -> dict[str, Any]:
    import torch
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, truncated zip, non-tensor objects refused by weights_only
        raise WeightsError(f"{path}: not a loadable state_dict ({type(exc).__name__}: {exc})") from None
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]  # a maskprep-train checkpoint
    if not isinstance(obj, dict):
        raise WeightsError(f"{path}: expected a state_dict, found {type(obj).__name__}")
    return obj


def apply_freeze(model: Any, mode: str) -> None:
    """Set ``requires_grad``: ``head`` trains only ``fc``; ``layer4`` also the last residual stage; ``none`` all."""
    if mode not in FREEZE_MODES:
        raise ValueError(f"freeze must be one of {FREEZE_MODES}, not {mode!r}")
    for name, p in model.named_parameters():
        top = name.split(".", 1)[0]
        p.requires_grad = (mode == "none" or top == "fc" or (mode == "layer4" and top == "layer4"))


def set_train_mode(model: Any, mode: str) -> None:
    """``model.train()`` for the parts that learn; frozen parts stay in eval so BatchNorm statistics stay put.

    Without this a frozen backbone would still drift (BatchNorm running means update in train mode),
    and the cached-feature fast path would no longer match the plain loop.
    """
    model.train()
    if mode == "none":
        return
    for name, child in model.named_children():
        if name == "fc" or (mode == "layer4" and name == "layer4"):
            continue
        child.eval()


def backbone_features(model: Any, x: Any) -> Any:
    """The pooled, flattened features that feed ``model.fc`` (ResNet's forward without the head)."""
    import torch
    x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
    x = model.layer4(model.layer3(model.layer2(model.layer1(x))))
    return torch.flatten(model.avgpool(x), 1)


def trainable_parameter_names(model: Any) -> list[str]:
    """Names of the parameters that will learn (for tests and the run log)."""
    return [n for n, p in model.named_parameters() if p.requires_grad]
