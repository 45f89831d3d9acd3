"""The app's favicon, drawn here: three bars of a batch-size chart (no asset from outside the machine)."""
from __future__ import annotations

from functools import lru_cache

from PIL import Image, ImageDraw

COLOR = (37, 99, 235, 255)  # the theme's primary colour


@lru_cache(maxsize=1)
def favicon(size: int = 64) -> Image.Image:
    img = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    width = size // 4
    gap = (size - 3 * width) // 4
    for i, frac in enumerate((0.45, 0.7, 0.95)):
        x0 = gap + i * (width + gap)
        draw.rounded_rectangle((x0, size - int(frac * size), x0 + width, size - 1), radius=size // 16, fill=COLOR)
    return img
