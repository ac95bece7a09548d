"""Images as inline data URIs, so the report is one file that opens from disk."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from PIL import Image

from ..data.images import read_image


def png_data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def thumbnail_uri(path: Path, size: int = 64) -> str:
    """A PNG thumbnail whose longer side is ``size``; small images are enlarged with sharp pixels."""
    buffer = io.BytesIO()
    read_image(path, size, "contain").save(buffer, format="PNG", optimize=True)
    return png_data_uri(buffer.getvalue())


def thumbnail(path: Path, size: int, alt: str) -> str:
    """An ``<img>`` of the file, or, when it cannot be read, a placeholder naming its path: one missing
    or damaged image never fails the whole report."""
    try:
        uri = thumbnail_uri(path, size)
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        reason = "missing" if isinstance(err, FileNotFoundError) else "unreadable"
        return (f"<span class='missing' style='width:{size}px' title='{html.escape(str(err))}'>{reason}:<br>"
                f"{html.escape(str(path))}</span>")
    return f"<img alt='{html.escape(alt)}' src='{uri}'>"
