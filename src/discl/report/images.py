"""Images as inline data URIs, so the report is one file that opens from disk."""

from __future__ import annotations

import base64
import io
from pathlib import Path

from PIL import Image


def png_data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def thumbnail_uri(path: Path, size: int = 64) -> str:
    """A PNG thumbnail whose longer side is ``size``; small images are enlarged with sharp pixels."""
    with Image.open(path) as image:
        image = image.convert("RGB")
        scale = size / max(image.size)
        new = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        resample = Image.Resampling.NEAREST if scale > 1 else Image.Resampling.LANCZOS
        buffer = io.BytesIO()
        image.resize(new, resample).save(buffer, format="PNG", optimize=True)
    return png_data_uri(buffer.getvalue())
