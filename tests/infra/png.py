"""Opens PNG bytes the bot uploaded (the Slack stand-in records them) for tests to look at:
its size, whether it is blank, and how many pixels have a given colour. Uses Pillow."""

from __future__ import annotations

import io

from PIL import Image

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def open_png(data: bytes) -> Image.Image:
    """The decoded image; fails the test when `data` is not a PNG."""
    assert data.startswith(PNG_SIGNATURE), f"not a PNG: {data[:16]!r}"
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    image.load()
    return image.convert("RGB")


def pixels_near(image: Image.Image, colour: str, *, tolerance: int = 24) -> int:
    """How many pixels are within `tolerance` (per channel) of `colour` ("#rrggbb")."""
    wanted = tuple(int(colour[index : index + 2], 16) for index in (1, 3, 5))
    return sum(
        count
        for count, rgb in _colours(image)
        if all(
            abs(channel - target) <= tolerance for channel, target in zip(rgb, wanted, strict=True)
        )
    )


def distinct_colours(image: Image.Image) -> int:
    return len(_colours(image))


def _colours(image: Image.Image) -> list[tuple[int, tuple[int, int, int]]]:
    """(count, (r, g, b)) for every colour in the image."""
    colours = image.getcolors(maxcolors=image.width * image.height)
    assert colours is not None
    return colours
