"""A minimal GIF decoder, used only to prove the simulator's recording is a real GIF."""

import struct


def _lzw_decode(data: bytes, min_code_size: int, pixel_count: int) -> bytes:
    clear, eoi = 1 << min_code_size, (1 << min_code_size) + 1
    pos = 0  # bit position
    code_size = min_code_size + 1
    table: list[bytes] = []

    def reset():
        nonlocal code_size, table
        code_size = min_code_size + 1
        table = [bytes([i]) for i in range(clear)] + [b"", b""]

    reset()
    out = bytearray()
    previous: bytes | None = None
    total_bits = len(data) * 8
    while pos + code_size <= total_bits:
        code = (int.from_bytes(data[pos // 8 : pos // 8 + 3], "little") >> (pos % 8)) & (
            (1 << code_size) - 1
        )
        pos += code_size
        if code == clear:
            reset()
            previous = None
            continue
        if code == eoi:
            break
        if code < len(table):
            entry = table[code]
            if previous is not None:
                table.append(previous + entry[:1])
        elif code == len(table) and previous is not None:
            entry = previous + previous[:1]
            table.append(entry)
        else:
            raise ValueError(f"bad LZW code {code}")
        out += entry
        previous = entry
        if len(table) == (1 << code_size) and code_size < 12:
            code_size += 1
    if len(out) != pixel_count:
        raise ValueError(f"decoded {len(out)} pixels, expected {pixel_count}")
    return bytes(out)


def decode_frames(gif: bytes) -> tuple[int, int, list[bytes]]:
    """(width, height, frames as palette indices); raises ValueError if invalid."""
    if gif[:6] not in (b"GIF87a", b"GIF89a"):
        raise ValueError("not a GIF")
    width, height, flags = struct.unpack("<HHB", gif[6:11])
    pos = 13
    if flags & 0x80:
        pos += 3 * (2 ** ((flags & 7) + 1))
    frames = []
    while True:
        block = gif[pos]
        if block == 0x3B:
            return width, height, frames
        if block == 0x21:  # extension: label, then sub-blocks
            pos += 2
            while gif[pos]:
                pos += gif[pos] + 1
            pos += 1
        elif block == 0x2C:
            x, y, w, h, iflags = struct.unpack("<HHHHB", gif[pos + 1 : pos + 10])
            pos += 10
            if iflags & 0x80:
                pos += 3 * (2 ** ((iflags & 7) + 1))
            min_code_size = gif[pos]
            pos += 1
            data = bytearray()
            while gif[pos]:
                data += gif[pos + 1 : pos + 1 + gif[pos]]
                pos += gif[pos] + 1
            pos += 1
            frames.append(_lzw_decode(bytes(data), min_code_size, w * h))
        else:
            raise ValueError(f"unexpected block 0x{block:02x} at {pos}")
