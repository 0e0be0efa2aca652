"""Image token costs by the providers' documented formulas, and image sizes from headers.

OpenAI (vision guide, "Calculating costs"):
* tile models (gpt-4o, gpt-4.1, gpt-4.5, gpt-5, o1, o3, gpt-4o-mini ...): `low` detail
  costs the base tokens; `high` scales the image to fit 2048x2048, then its shortest side
  to 768, and costs base + tile_tokens * (number of 512 px tiles). gpt-4o: 85 + 170/tile
  (1024x1024 -> 765, 2048x4096 -> 1105); gpt-4o-mini: 2833 + 5667/tile; o1/o3: 75 + 150.
* patch models (gpt-4.1-mini/nano, o4-mini, gpt-5-mini/nano): 32 px patches, capped at
  1536 (the image scaled down to fit), times a multiplier (1.62 / 2.46 / 1.72).
Anthropic: about width * height / 750 tokens after scaling the long side to <= 1568 px.
Gemini: 258 tokens per image up to 384 px on both sides, else 258 per 768x768 tile.
"""

from __future__ import annotations

import base64
import math
import struct
from dataclasses import dataclass

# The size used when it is unknown (the answer is then ESTIMATED): the most tiles an image
# can cover after OpenAI's scaling (768 x 2048: 2 x 4 tiles), and a full patch budget.
UNKNOWN_SIZE = (768, 2048)


@dataclass(frozen=True)
class ImageCost:
    tokens: int
    exact: bool


def _tile_params(model: str) -> tuple[int, int]:
    if model.startswith("gpt-4o-mini"):
        return 2833, 5667
    if model.startswith(("o1", "o3")) and not model.startswith("o3-mini"):
        return 75, 150
    return 85, 170


_PATCH = {"gpt-4.1-mini": 1.62, "gpt-4.1-nano": 2.46, "o4-mini": 1.72,
          "gpt-5-mini": 1.62, "gpt-5-nano": 2.46}


def openai_tokens(model: str, width: int, height: int, detail: str) -> int:
    for prefix, multiplier in _PATCH.items():
        if model.startswith(prefix):
            return _patch_tokens(width, height, multiplier)
    base, per_tile = _tile_params(model)
    if detail == "low":
        return base
    w, h = float(width), float(height)
    if max(w, h) > 2048:
        scale = 2048 / max(w, h)
        w, h = w * scale, h * scale
    if min(w, h) > 768:
        scale = 768 / min(w, h)
        w, h = w * scale, h * scale
    tiles = math.ceil(w / 512) * math.ceil(h / 512)
    return base + per_tile * tiles


def _patch_tokens(width: int, height: int, multiplier: float) -> int:
    patches = math.ceil(width / 32) * math.ceil(height / 32)
    if patches > 1536:
        r = math.sqrt(32 * 32 * 1536 / (width * height))
        r *= min(math.floor(width * r / 32) / (width * r / 32),
                 math.floor(height * r / 32) / (height * r / 32))
        patches = math.ceil(width * r / 32) * math.ceil(height * r / 32)
    return math.ceil(min(patches, 1536) * multiplier)


def anthropic_tokens(width: int, height: int) -> int:
    scale = min(1.0, 1568 / max(width, height))
    return math.ceil(width * scale * height * scale / 750)


def gemini_tokens(width: int, height: int) -> int:
    if width <= 384 and height <= 384:
        return 258
    return 258 * math.ceil(width / 768) * math.ceil(height / 768)


def cost(vendor: str, model: str, width: int | None, height: int | None,
         detail: str) -> ImageCost:
    """Tokens for one image; estimated at an upper bound when the size or detail is unknown."""
    known = width is not None and height is not None and width > 0 and height > 0
    w, h = (width, height) if known else UNKNOWN_SIZE
    assert w is not None and h is not None
    if vendor == "openai":
        if detail == "low" and not any(model.startswith(p) for p in _PATCH):
            return ImageCost(openai_tokens(model, w, h, "low"), True)
        return ImageCost(openai_tokens(model, w, h, "high"), known and detail == "high")
    if vendor == "anthropic":
        return ImageCost(anthropic_tokens(w, h), False)
    return ImageCost(gemini_tokens(w, h), False)


def size_from_bytes(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG, GIF, JPEG or WebP header; None when not recognised."""
    try:
        if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
            w, h = struct.unpack(">II", data[16:24])
            return int(w), int(h)
        if data[:6] in (b"GIF87a", b"GIF89a"):
            w, h = struct.unpack("<HH", data[6:10])
            return int(w), int(h)
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return _webp(data)
        if data[:2] == b"\xff\xd8":
            return _jpeg(data)
    except (struct.error, IndexError):
        return None
    return None


def _webp(data: bytes) -> tuple[int, int] | None:
    kind = data[12:16]
    if kind == b"VP8X":
        w = int.from_bytes(data[24:27], "little") + 1
        h = int.from_bytes(data[27:30], "little") + 1
        return w, h
    if kind == b"VP8 ":
        w, h = struct.unpack("<HH", data[26:30])
        return w & 0x3FFF, h & 0x3FFF
    if kind == b"VP8L":
        b = data[21:25]
        w = 1 + (((b[1] & 0x3F) << 8) | b[0])
        h = 1 + (((b[3] & 0xF) << 10) | (b[2] << 2) | ((b[1] & 0xC0) >> 6))
        return w, h
    return None


def _jpeg(data: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        length = struct.unpack(">H", data[i + 2:i + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack(">HH", data[i + 5:i + 9])
            return int(w), int(h)
        i += 2 + length
    return None


def size_from_url(url: str) -> tuple[int, int] | None:
    """The size of an inline `data:` URL image; remote URLs are not fetched (None)."""
    if not url.startswith("data:") or ";base64," not in url:
        return None
    payload = url.split(";base64,", 1)[1]
    try:
        head = base64.b64decode(payload[:65536] + "=" * (-len(payload[:65536]) % 4))
    except ValueError:
        return None
    return size_from_bytes(head)
