"""A student's images (a notebook's stored PNGs, a PDF's pictures) as the harness looks at them:
flattened on white, the way they appear on a page, whatever transparency they carry."""

from __future__ import annotations

import io

ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La", "P")  # PIL modes that may hold transparency


def on_white(image):
    """A PIL image with its transparency (alpha, soft mask, palette transparency) composited on
    white; other images are returned as they are."""
    from PIL import Image

    if image.mode not in ALPHA_MODES:
        return image
    rgba = image.convert("RGBA")
    return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")


def open_png(png: bytes, side: int | None = None):
    """The PNG as an RGB PIL image on white, at most ``side`` pixels a side when given; None when it
    cannot be decoded."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(png)) as im:
            if side:
                im.draft("RGB", (side, side))
            image = on_white(im).convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
        return None
    if side:
        image.thumbnail((side, side))
    return image
