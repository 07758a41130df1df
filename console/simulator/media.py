"""Small but real media files, generated in code (stdlib only).

Guarantees:
- `recording_gif(kind)` is a valid animated GIF89a (looping, 12 frames,
  160x90, 8 colours, properly LZW-compressed) that any browser plays in an
  `<img>`; `kind` ("running", "completed", "failed", other) picks the colour of
  the progress bar so a failed run's recording looks different.
- `screenshot_png(n)` is a valid 8-bit RGB PNG (zlib + CRC per the spec).
- `file_bytes(name, seed)` is a tiny valid PDF for `*.pdf`, CSV text otherwise.

Everything is deterministic and cached: the same arguments give the same bytes.

Why a GIF for the "recording": Skyvern records WebM video, but a valid WebM
needs a VP8/VP9 bitstream that cannot reasonably be produced without a codec
library, whereas an animated GIF is a few dozen lines of stdlib code and plays
everywhere without a codec. It is served as `image/gif`.
"""

import struct
import zlib
from functools import lru_cache

WIDTH, HEIGHT, FRAMES = 160, 90, 12

# Palette: 0 page background, 1 header bar, 2 text lines, 3 button, 4 cursor,
# 5 progress (running), 6 progress (completed), 7 progress (failed).
_PALETTE = [
    (246, 247, 249),
    (31, 58, 96),
    (188, 194, 204),
    (66, 133, 244),
    (20, 20, 20),
    (240, 173, 78),
    (46, 160, 67),
    (207, 34, 46),
]
_BAR = {"running": 5, "completed": 6, "failed": 7}


def _lzw(indices: bytes, min_code_size: int) -> bytes:
    """GIF-flavoured variable-width LZW (LSB-first bit packing)."""
    clear, eoi = 1 << min_code_size, (1 << min_code_size) + 1
    out = bytearray()
    bit_buffer = 0
    bit_count = 0
    code_size = min_code_size + 1

    def emit(code: int) -> None:
        nonlocal bit_buffer, bit_count
        bit_buffer |= code << bit_count
        bit_count += code_size
        while bit_count >= 8:
            out.append(bit_buffer & 0xFF)
            bit_buffer >>= 8
            bit_count -= 8

    table: dict[tuple[int, int], int] = {}
    next_code = eoi + 1
    emit(clear)
    prefix = indices[0]
    for k in indices[1:]:
        code = table.get((prefix, k))
        if code is not None:
            prefix = code
            continue
        emit(prefix)
        if next_code == 4096:
            emit(clear)
            table.clear()
            next_code = eoi + 1
            code_size = min_code_size + 1
        else:
            if next_code >= (1 << code_size):
                code_size += 1
            table[(prefix, k)] = next_code
            next_code += 1
        prefix = k
    emit(prefix)
    emit(eoi)
    if bit_count:
        out.append(bit_buffer & 0xFF)
    return bytes(out)


def _sub_blocks(data: bytes) -> bytes:
    chunks = [bytes([len(data[i : i + 255])]) + data[i : i + 255] for i in range(0, len(data), 255)]
    return b"".join(chunks) + b"\x00"


def _frame(n: int, bar_colour: int) -> bytes:
    """One frame: a fake web page, a cursor moving, a progress bar filling."""
    pixels = bytearray(WIDTH * HEIGHT)  # colour 0 everywhere

    def rect(x0, y0, x1, y1, colour):
        for y in range(max(0, y0), min(HEIGHT, y1)):
            row = y * WIDTH
            pixels[row + max(0, x0) : row + min(WIDTH, x1)] = bytes([colour]) * (
                min(WIDTH, x1) - max(0, x0)
            )

    rect(0, 0, WIDTH, 14, 1)
    for i, y in enumerate(range(22, 62, 8)):
        rect(12, y, 12 + 60 + (i * 23) % 70, y + 4, 2)
    rect(110, 64, 148, 74, 3)
    cx = 20 + (n * 95) // (FRAMES - 1)
    cy = 30 + (n * 38) // (FRAMES - 1)
    rect(cx, cy, cx + 3, cy + 7, 4)
    rect(cx, cy, cx + 6, cy + 3, 4)
    rect(0, HEIGHT - 6, (WIDTH * (n + 1)) // FRAMES, HEIGHT, bar_colour)
    return bytes(pixels)


@lru_cache(maxsize=8)
def recording_gif(kind: str = "completed") -> bytes:
    bar = _BAR.get(kind, 5)
    out = bytearray(b"GIF89a")
    out += struct.pack("<HHBBB", WIDTH, HEIGHT, 0b1111_0010, 0, 0)  # GCT, 8 colours
    for r, g, b in _PALETTE:
        out += bytes((r, g, b))
    out += b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"  # loop forever
    for n in range(FRAMES):
        out += b"\x21\xf9\x04\x04" + struct.pack("<H", 25) + b"\x00\x00"  # 250 ms
        out += b"\x2c" + struct.pack("<HHHHB", 0, 0, WIDTH, HEIGHT, 0)
        out += b"\x03" + _sub_blocks(_lzw(_frame(n, bar), 3))
    out += b"\x3b"
    return bytes(out)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data))
        + kind
        + data
        + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


@lru_cache(maxsize=8)
def screenshot_png(n: int = 0) -> bytes:
    """A 160x90 'screenshot': the n-th frame of the recording, as a PNG."""
    pixels = _frame(n % FRAMES, 5)
    raw = bytearray()
    for y in range(HEIGHT):
        raw.append(0)  # filter type: none
        for idx in pixels[y * WIDTH : (y + 1) * WIDTH]:
            raw += bytes(_PALETTE[idx])
    header = struct.pack(">IIBBBBB", WIDTH, HEIGHT, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(bytes(raw), 9))
        + _png_chunk(b"IEND", b"")
    )


def _pdf(text: str) -> bytes:
    safe = "".join(c for c in text if c.isalnum() or c in " -_.:#/")[:80]
    stream = f"BT /F1 12 Tf 36 100 Td ({safe}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 420 160] "
        b"/Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


@lru_cache(maxsize=256)
def file_bytes(filename: str, seed: str) -> bytes:
    """The content of a run's downloaded file, deterministic from its name and run."""
    if filename.lower().endswith(".pdf"):
        return _pdf(f"{filename} - {seed}")
    return f"document,run\n{filename},{seed}\n".encode()


def content_type_for(filename: str) -> str:
    if filename.lower().endswith(".pdf"):
        return "application/pdf"
    if filename.lower().endswith(".csv"):
        return "text/csv; charset=utf-8"
    return "application/octet-stream"
