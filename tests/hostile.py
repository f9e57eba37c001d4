"""Hostile and awkward upload files, built in code (no binary fixtures).

Each builder returns the bytes an attacker (or an odd camera) would post. Bombs are tiny files
whose headers declare a huge picture: the header is patched in place (and the PNG CRC fixed), so
the file is otherwise well formed and only the declared size is a lie.
"""

from __future__ import annotations

import io
import random
import struct
import zlib

from PIL import Image, ImageDraw

from tests import images

# --- plain encodings -----------------------------------------------------------------------


def encoded(img: Image.Image, fmt: str, **params) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt, **params)
    return out.getvalue()


def jpeg(seed: int = 1, size: tuple[int, int] = (320, 240), **params) -> bytes:
    return encoded(images.photo(seed, size), "JPEG", **params)


def png(seed: int = 1, size: tuple[int, int] = (320, 240), **params) -> bytes:
    return encoded(images.photo(seed, size), "PNG", **params)


def gif(seed: int = 1, size: tuple[int, int] = (320, 240)) -> bytes:
    return encoded(images.photo(seed, size), "GIF")


def webp(seed: int = 1, size: tuple[int, int] = (320, 240), **params) -> bytes:
    return encoded(images.photo(seed, size), "WEBP", **params)


# --- not images at all ---------------------------------------------------------------------

TEXT = b"Just some text, not a picture.\n" * 20
HTML = b"<!doctype html><html><body><script>alert(document.cookie)</script></body></html>\n"
SVG = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<svg xmlns="http://www.w3.org/2000/svg" width="400" height="400">'
    b'<script type="text/javascript">alert(document.cookie)</script>'
    b'<rect width="400" height="400" fill="red"/></svg>\n'
)
PHP = b"<?php system($_GET['cmd']); ?>"


def random_bytes(n: int = 4096, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


def pdf() -> bytes:
    return encoded(images.photo(2, (200, 150)), "PDF")


def eps() -> bytes:
    """An EPS (PostScript); opening its pixels would run Ghostscript."""
    return encoded(images.photo(3, (200, 150)), "EPS")


def psd(size: tuple[int, int] = (64, 64)) -> bytes:
    """A minimal Photoshop file (Pillow reads PSD but cannot write it): RGB, raw planes."""
    w, h = size
    header = b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, h, w, 8, 3)
    sections = struct.pack(">I", 0) * 3  # colour mode data, image resources, layers: empty
    planes = bytes([(x * 7) % 256 for x in range(w * h)]) * 3
    return header + sections + struct.pack(">H", 0) + planes


def tiff(size: tuple[int, int] = (200, 150)) -> bytes:
    return encoded(images.photo(4, size), "TIFF")


def ico() -> bytes:
    return encoded(images.photo(5, (64, 64)), "ICO")


def bmp() -> bytes:
    return encoded(images.photo(6, (200, 150)), "BMP")


# --- broken images -------------------------------------------------------------------------


def truncated(data: bytes, keep: float = 0.5) -> bytes:
    return data[: int(len(data) * keep)]


def _segment(data: bytes, marker: int) -> int:
    """Offset of the first JPEG segment with this marker (the 0xFF byte)."""
    at = data.find(bytes([0xFF, marker]))
    assert at > 0, f"no FF{marker:02X} segment"
    return at


def jpeg_broken_huffman(seed: int = 1) -> bytes:
    """A JPEG whose first Huffman table is garbage (count bytes claim more codes than exist)."""
    data = bytearray(jpeg(seed))
    at = _segment(data, 0xC4) + 5  # FF C4, length (2), class/id (1): then the 16 counts
    data[at : at + 16] = b"\xff" * 16
    return bytes(data)


def jpeg_garbage_scan(seed: int = 1) -> bytes:
    data = bytearray(jpeg(seed))
    start = _segment(data, 0xDA) + 20
    rng = random.Random(seed)
    for i in range(start, len(data) - 2, 7):
        data[i] = rng.randrange(256)
    return bytes(data)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_insert_before_idat(data: bytes, chunk: bytes) -> bytes:
    at = data.find(b"IDAT") - 4
    return data[:at] + chunk + data[at:]


def png_bad_crc(seed: int = 1) -> bytes:
    data = bytearray(png(seed))
    at = data.find(b"IDAT") + 10
    data[at] ^= 0xFF  # body changed, CRC not
    return bytes(data)


def png_garbage_idat(seed: int = 1) -> bytes:
    """Valid chunk structure and CRCs, but the compressed pixels are noise."""
    data = png(seed)
    at = data.find(b"IDAT") - 4
    (length,) = struct.unpack(">I", data[at : at + 4])
    body = random.Random(seed).randbytes(length)
    return data[:at] + _png_chunk(b"IDAT", body) + data[at + 12 + length :]


# --- bombs: a tiny file that declares a huge picture ---------------------------------------


def png_declaring(width: int, height: int) -> bytes:
    data = bytearray(png(1, (64, 48)))
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def gif_declaring(width: int, height: int) -> bytes:
    """Logical screen and first image descriptor both claim ``width`` x ``height``."""
    data = bytearray(gif(1, (64, 48)))
    data[6:10] = struct.pack("<HH", width, height)
    flags = data[10]
    at = 13 + (3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0)
    while data[at] == 0x21:  # skip extensions: 21 label, then sub-blocks
        at += 2
        while data[at]:
            at += data[at] + 1
        at += 1
    assert data[at] == 0x2C, "image descriptor expected"
    data[at + 5 : at + 9] = struct.pack("<HH", width, height)
    return bytes(data)


def jpeg_declaring(width: int, height: int) -> bytes:
    data = bytearray(jpeg(1, (64, 48)))
    at = _segment(data, 0xC0) + 5  # FF C0, length (2), precision (1): then height, width
    data[at : at + 4] = struct.pack(">HH", height, width)
    return bytes(data)


def webp_declaring(width: int, height: int) -> bytes:
    """A lossless WebP whose VP8L header claims the size (14 bits each: at most 16384)."""
    data = bytearray(webp(1, (64, 48), lossless=True))
    at = data.find(b"VP8L") + 8
    assert data[at] == 0x2F
    (bits,) = struct.unpack("<I", data[at + 1 : at + 5])
    bits = (bits & ~((1 << 28) - 1)) | (width - 1) | ((height - 1) << 14)
    data[at + 1 : at + 5] = struct.pack("<I", bits)
    return bytes(data)


def tiff_declaring(width: int, height: int) -> bytes:
    """A hand-made little-endian TIFF: 8-bit grey, uncompressed, one strip of 64 bytes."""
    entries = [
        (256, 4, 1, width),  # ImageWidth, LONG
        (257, 4, 1, height),  # ImageLength
        (258, 3, 1, 8),  # BitsPerSample
        (259, 3, 1, 1),  # Compression: none
        (262, 3, 1, 1),  # Photometric: black is zero
        (273, 4, 1, 0),  # StripOffsets (patched below)
        (277, 3, 1, 1),  # SamplesPerPixel
        (278, 4, 1, height),  # RowsPerStrip
        (279, 4, 1, 64),  # StripByteCounts
    ]
    ifd_offset = 8
    ifd_size = 2 + 12 * len(entries) + 4
    strip_offset = ifd_offset + ifd_size
    out = bytearray(b"II*\x00" + struct.pack("<I", ifd_offset))
    out += struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        if tag == 273:
            value = strip_offset
        packed = struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)
        out += struct.pack("<HHI", tag, kind, count) + packed
    out += struct.pack("<I", 0) + bytes(64)
    return bytes(out)


def png_with_text(size: int, key: bytes = b"Comment", compressed: bool = False) -> bytes:
    """A valid PNG carrying ``size`` bytes of text (zTXt: ``size`` after decompression)."""
    text = b"A" * size
    if compressed:
        chunk = _png_chunk(b"zTXt", key + b"\0\0" + zlib.compress(text, 9))
    else:
        chunk = _png_chunk(b"tEXt", key + b"\0" + text)
    return _png_insert_before_idat(png(1), chunk)


def animated_gif(
    frames: int,
    size: tuple[int, int] = (64, 64),
    banned_at: int | None = None,
    banned: Image.Image | None = None,
) -> bytes:
    """``frames`` distinct frames (a counter drawn on each); ``banned`` as frame ``banned_at``."""
    pictures = []
    for i in range(frames):
        if banned is not None and i == banned_at:
            pictures.append(banned.resize(size).convert("RGB"))
            continue
        frame = Image.new("RGB", size, ((i * 37) % 256, (i * 91) % 256, (i * 13) % 256))
        ImageDraw.Draw(frame).text((2, 2), str(i), fill=(255, 255, 255))
        pictures.append(frame)
    return encoded(pictures[0], "GIF", save_all=True, append_images=pictures[1:], duration=40)


def animated_webp(pictures: list[Image.Image]) -> bytes:
    return encoded(pictures[0], "WEBP", save_all=True, append_images=pictures[1:], duration=100)


def jpeg_with_comments(total_bytes: int, seed: int = 1) -> bytes:
    """A valid JPEG padded to ``total_bytes`` with COM segments before its pixels."""
    data = jpeg(seed)
    segment = b"\xff\xfe" + struct.pack(">H", 65535) + b"x" * 65533
    need = max(0, total_bytes - len(data))
    body = segment * (need // len(segment))
    rest = need - len(body)
    if rest >= 4:
        body += b"\xff\xfe" + struct.pack(">H", rest - 2) + b"x" * (rest - 4)
    return data[:2] + body + data[2:]


# --- payloads hidden in otherwise good images ---------------------------------------------

PAYLOAD = b"<script>alert('xss')</script><?php system($_GET['c']); ?>"


def jpeg_with_comment_payload(seed: int = 1) -> bytes:
    return encoded(images.photo(seed, (320, 240)), "JPEG", comment=PAYLOAD)


def jpeg_with_exif_payload(seed: int = 1) -> bytes:
    exif = Image.Exif()
    exif[0x010E] = PAYLOAD.decode()  # ImageDescription
    exif[0x0131] = PAYLOAD.decode()  # Software
    return encoded(images.photo(seed, (320, 240)), "JPEG", exif=exif.tobytes())


def jpeg_with_trailing_payload(seed: int = 1) -> bytes:
    return jpeg(seed) + PAYLOAD * 10


def png_with_text_payload(seed: int = 1) -> bytes:
    data = png(seed)
    data = _png_insert_before_idat(data, _png_chunk(b"tEXt", b"comment\0" + PAYLOAD))
    return _png_insert_before_idat(data, _png_chunk(b"tEXt", b"Description\0" + PAYLOAD))


def gif_with_comment_payload(seed: int = 1) -> bytes:
    return encoded(images.photo(seed, (320, 240)), "GIF", comment=PAYLOAD)


def with_orientation(img: Image.Image, orientation: int, fmt: str = "JPEG") -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encoded(img, fmt, exif=exif.tobytes())
