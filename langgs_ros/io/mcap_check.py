"""Integrity of an MCAP file: every chunk's CRC-32 checked before its messages are trusted.

rosbags reads chunks without checking their CRCs, so flipped bytes inside a chunk reach the map
as wrong colours or depths. :func:`check_mcap` walks the records of the data section (MCAP
specification: magic, then ``opcode u8, length u64, content``), decompresses each chunk that
carries a CRC (zstd and lz4 through the libraries rosbags already depends on) and reports the
log-time range of every chunk whose CRC does not match, and where a truncated file ends.
"""

from __future__ import annotations

import mmap
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["McapReport", "check_mcap", "add_chunk_crcs", "MAGIC"]

MAGIC = b"\x89MCAP0\r\n"
_CHUNK = 0x06
_FOOTER = 0x02
_DATA_END = 0x0F


@dataclass
class McapReport:
    """What :func:`check_mcap` found."""

    chunks: int = 0
    bad_chunks: list[tuple[int, int, str]] = field(default_factory=list)
    """(first log time, last log time, reason) of each chunk that failed its check, nanoseconds."""
    truncated_at: int | None = None
    """Byte offset where the record structure stops making sense (a cut or garbled file)."""

    def good_windows(self) -> list[tuple[int | None, int | None]]:
        """(start, stop) log-time windows (ns, stop exclusive; None = open) that avoid every bad chunk."""
        windows: list[tuple[int | None, int | None]] = []
        start: int | None = None
        for t0, t1, _ in sorted(self.bad_chunks):
            windows.append((start, t0))
            start = t1 + 1
        windows.append((start, None))
        return [(a, b) for a, b in windows if a is None or b is None or a < b]



def _decompress(compression: str, data: bytes, size: int) -> bytes:
    if compression == "":
        return data
    if compression == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().decompress(data, max_output_size=size)
    if compression == "lz4":
        import lz4.frame

        return lz4.frame.decompress(data)
    raise ValueError(f"unknown chunk compression '{compression}'")


def check_mcap(path: str | Path) -> McapReport:
    """Check the chunk CRCs of an MCAP file; raises ValueError if it is not an MCAP file at all."""
    report = McapReport()
    with open(path, "rb") as fh:
        size = fh.seek(0, 2)
        if size < 2 * len(MAGIC):
            raise ValueError(f"{size} bytes, too short for an MCAP file")
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            if buf[: len(MAGIC)] != MAGIC:
                raise ValueError("does not start with the MCAP magic bytes")
            pos = len(MAGIC)
            while pos + 9 <= size:
                opcode = buf[pos]
                (length,) = struct.unpack_from("<Q", buf, pos + 1)
                start, end = pos + 9, pos + 9 + length
                if end > size:
                    report.truncated_at = pos
                    break
                if opcode == _CHUNK:
                    report.chunks += 1
                    _check_chunk(buf, start, end, report)
                elif opcode in (_DATA_END, _FOOTER):
                    break
                pos = end
            else:
                if pos != size:
                    report.truncated_at = pos
    return report


def _check_chunk(buf: mmap.mmap, start: int, end: int, report: McapReport) -> None:
    try:
        t0, t1, usize, crc = struct.unpack_from("<QQQI", buf, start)
        (name_len,) = struct.unpack_from("<I", buf, start + 28)
        name_end = start + 32 + name_len
        compression = bytes(buf[start + 32: name_end]).decode()
        (rec_len,) = struct.unpack_from("<Q", buf, name_end)
        data = bytes(buf[name_end + 8: name_end + 8 + rec_len])
        if name_end + 8 + rec_len > end:
            raise ValueError("records run past the chunk")
    except (struct.error, UnicodeDecodeError, ValueError) as exc:
        report.bad_chunks.append((0, 2**63 - 1, f"corrupt MCAP chunk header ({exc})"))
        return
    if crc == 0:
        return  # written without a CRC: nothing to check
    try:
        records = _decompress(compression, data, usize)
    except Exception as exc:  # noqa: BLE001 - any decompression failure is corruption
        report.bad_chunks.append((t0, t1, f"MCAP chunk does not decompress ({type(exc).__name__})"))
        return
    if len(records) != usize or zlib.crc32(records) != crc:
        report.bad_chunks.append((t0, t1, "MCAP chunk CRC mismatch (corrupt bytes)"))


def add_chunk_crcs(path: str | Path) -> int:
    """Write the CRC-32 of every uncompressed chunk that has none (rosbags writes chunks without
    one), in place; returns how many chunks got one. Bags recorded by ``ros2 bag record`` already
    carry CRCs; this gives the bags this package writes the same protection."""
    patched = 0
    with open(path, "r+b") as fh:
        size = fh.seek(0, 2)
        with mmap.mmap(fh.fileno(), 0) as buf:
            if size < 2 * len(MAGIC) or buf[: len(MAGIC)] != MAGIC:
                raise ValueError(f"{path} is not an MCAP file")
            pos = len(MAGIC)
            while pos + 9 <= size:
                opcode = buf[pos]
                (length,) = struct.unpack_from("<Q", buf, pos + 1)
                start = pos + 9
                if opcode == _CHUNK and start + length <= size:
                    _, _, usize, crc = struct.unpack_from("<QQQI", buf, start)
                    (name_len,) = struct.unpack_from("<I", buf, start + 28)
                    name_end = start + 32 + name_len
                    (rec_len,) = struct.unpack_from("<Q", buf, name_end)
                    if crc == 0 and name_len == 0 and rec_len == usize:
                        records = buf[name_end + 8: name_end + 8 + rec_len]
                        struct.pack_into("<I", buf, start + 24, zlib.crc32(records))
                        patched += 1
                elif opcode in (_DATA_END, _FOOTER):
                    break
                pos = start + length
            buf.flush()
    return patched
