"""Task models timm does not ship, registered with timm so `timm.create_model(name)` builds them.

``resnet10``: the ResNet-10 the reference trains on ImageNet-LT (torchvision-style: BasicBlock
[1, 1, 1, 1], 7x7 stride-2 stem + max pool, no zero-initialised last BatchNorm). timm's nearest
model, ``resnet10t``, has a three-convolution ("tiered") stem and is a different network.
"""

from __future__ import annotations

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import register_model
from timm.models.resnet import BasicBlock, ResNet

_CFG = {"input_size": (3, 224, 224), "pool_size": (7, 7), "crop_pct": 0.875, "interpolation": "bilinear",
        "mean": IMAGENET_DEFAULT_MEAN, "std": IMAGENET_DEFAULT_STD, "first_conv": "conv1", "classifier": "fc",
        "num_classes": 1000}


def _load_local(model: ResNet, path: str) -> None:
    """Weights from a local file (no pickle); the classifier is left at its fresh init when its size differs."""
    from ..mining import read_state_dict

    state = read_state_dict(path)
    own = model.state_dict()
    head = {k for k in ("fc.weight", "fc.bias") if k in state and state[k].shape != own[k].shape}
    missing, unexpected = model.load_state_dict({k: v for k, v in state.items() if k not in head}, strict=False)
    if unexpected or set(missing) - head:
        raise ValueError(f"{path} does not fit resnet10: missing {sorted(set(missing) - head)[:3]}, "
                         f"unexpected {sorted(unexpected)[:3]}")


@register_model
def resnet10(pretrained: bool = False, **kwargs) -> ResNet:
    overlay = kwargs.pop("pretrained_cfg_overlay", None) or {}
    kwargs.pop("pretrained_cfg", None)
    kwargs.pop("cache_dir", None)
    # timm annotates ``block`` as an instance, but ResNet takes the block class
    model = ResNet(BasicBlock, (1, 1, 1, 1), zero_init_last=False, **kwargs)  # type: ignore[arg-type]
    # an attribute timm's builder sets at run time (ResNet does not declare it)
    model.pretrained_cfg = dict(_CFG, num_classes=model.num_classes)  # type: ignore[assignment]
    model.default_cfg = model.pretrained_cfg
    if pretrained:
        if "file" not in overlay:
            raise ValueError("resnet10 has no published weights; give a local weights file (train.classifier.pretrained)")
        _load_local(model, overlay["file"])
    return model
