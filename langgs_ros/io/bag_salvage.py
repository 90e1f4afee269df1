"""Recordings that ended badly, read as far as they go.

A robot whose battery died leaves an MCAP file cut mid-chunk, with no summary and no footer, and
often no ``metadata.yaml`` (``ros2 bag record`` writes it on close). Every complete record before
the cut is intact, and so is every complete message inside an uncompressed chunk that was cut:
:func:`salvage_mcap_bag` reads them (MCAP specification: ``opcode u8, length u64, content``;
Schema, Channel and Message records, top-level or inside chunks) and writes them, in log-time order,
into a new bag in a temporary directory with rosbags' writer (index, summary and ``metadata.yaml``
included). A closed MCAP file that only lacks ``metadata.yaml`` gets the same treatment. SQLite bags
without ``metadata.yaml`` are what ``ros2 bag reindex`` is for; this handles MCAP only.
"""

from __future__ import annotations

import mmap
import struct
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from langgs_ros.io.mcap_check import MAGIC, _decompress

__all__ = ["SalvagedBag", "salvage_mcap_bag", "needs_salvage"]

_SCHEMA, _CHANNEL, _MESSAGE, _CHUNK, _FOOTER = 0x03, 0x04, 0x05, 0x06, 0x02
_STOP = (0x02, 0x0F)  # Footer, DataEnd


@dataclass
class SalvagedBag:
    """A readable copy of a damaged bag (in a temporary directory, removed by :meth:`cleanup`)."""

    path: Path
    notes: list[str] = field(default_factory=list)
    _tmp: tempfile.TemporaryDirectory | None = None

    def cleanup(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def _closed(file: Path) -> bool:
    """Whether an MCAP file ends as a closed one does (footer and magic)."""
    size = file.stat().st_size
    footer = 1 + 8 + 20
    if size < 2 * len(MAGIC) + footer:
        return False
    with file.open("rb") as fh:
        fh.seek(size - len(MAGIC) - footer)
        tail = fh.read()
    return tail[-len(MAGIC):] == MAGIC and tail[0] == _FOOTER


def needs_salvage(bag_dir: Path) -> bool:
    """A directory of MCAP files of which one is not closed, or that has no ``metadata.yaml``."""
    mcaps = sorted(bag_dir.glob("*.mcap"))
    return bool(mcaps) and (not (bag_dir / "metadata.yaml").is_file() or not all(_closed(f) for f in mcaps))


def _records(buf: bytes | mmap.mmap, start: int, end: int, into_chunks: bool) -> Iterator[tuple[int, bytes]]:
    """(opcode, content) of the complete records in ``buf[start:end]``; inside chunks too
    (``into_chunks``), of a cut uncompressed chunk as far as its records go."""
    pos = start
    while pos + 9 <= end:
        opcode = buf[pos]
        (length,) = struct.unpack_from("<Q", buf, pos + 1)
        body_start, body_end = pos + 9, pos + 9 + length
        if opcode in _STOP:
            return
        if body_end > end:  # cut here: an uncompressed chunk still holds whole messages
            if opcode == _CHUNK and into_chunks:
                yield from _cut_chunk(buf, body_start, end)
            return
        if opcode == _CHUNK and into_chunks:
            yield from _chunk(bytes(buf[body_start:body_end]))
        else:
            yield opcode, bytes(buf[body_start:body_end])
        pos = body_end


def _chunk_header(content: bytes | mmap.mmap, start: int) -> tuple[str, int, int]:
    """(compression, uncompressed size, offset of the records) of a chunk's content at ``start``."""
    usize = struct.unpack_from("<Q", content, start + 16)[0]
    (name_len,) = struct.unpack_from("<I", content, start + 28)
    compression = bytes(content[start + 32: start + 32 + name_len]).decode()
    return compression, usize, start + 32 + name_len + 8


def _chunk(content: bytes) -> Iterator[tuple[int, bytes]]:
    compression, usize, records = _chunk_header(content, 0)
    try:
        data = _decompress(compression, content[records:], usize)
    except Exception:  # noqa: BLE001 - a chunk that does not decompress gives nothing
        return
    yield from _records(data, 0, len(data), into_chunks=False)


def _cut_chunk(buf: bytes | mmap.mmap, start: int, end: int) -> Iterator[tuple[int, bytes]]:
    try:
        compression, _, records = _chunk_header(buf, start)
    except (struct.error, UnicodeDecodeError):
        return
    if compression == "" and records <= end:
        yield from _records(bytes(buf[records:end]), 0, end - records, into_chunks=False)


def _string(data: bytes, pos: int) -> tuple[str, int]:
    (n,) = struct.unpack_from("<I", data, pos)
    return data[pos + 4: pos + 4 + n].decode(), pos + 4 + n


def _qos_of(metadata: bytes) -> str:
    """``offered_qos_profiles`` of a channel's metadata map ('' if none)."""
    pos = 0
    while pos < len(metadata):
        key, pos = _string(metadata, pos)
        value, pos = _string(metadata, pos)
        if key == "offered_qos_profiles":
            return value
    return ""


def salvage_mcap_bag(bag_dir: Path) -> SalvagedBag:
    """A readable copy of ``bag_dir`` (see module docstring); raises ValueError when no complete
    message is found."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.rosbag2.metadata import parse_qos
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    schemas: dict[int, tuple[str, str, str]] = {}  # id -> (name, encoding, definition)
    channels: dict[int, tuple[str, int, str]] = {}  # id -> (topic, schema id, qos)
    messages: list[tuple[int, int, bytes]] = []  # (log time, channel, data)
    notes: list[str] = []
    for file in sorted(bag_dir.glob("*.mcap")):
        size = file.stat().st_size
        with file.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            if size < len(MAGIC) or buf[: len(MAGIC)] != MAGIC:
                raise ValueError(f"{file.name} does not start with the MCAP magic bytes")
            before = len(messages)
            for opcode, content in _records(buf, len(MAGIC), size, into_chunks=True):
                try:
                    if opcode == _SCHEMA:
                        (sid,) = struct.unpack_from("<H", content, 0)
                        name, pos = _string(content, 2)
                        encoding, pos = _string(content, pos)
                        (n,) = struct.unpack_from("<I", content, pos)
                        schemas[sid] = (name, encoding, content[pos + 4: pos + 4 + n].decode())
                    elif opcode == _CHANNEL:
                        cid, sid = struct.unpack_from("<HH", content, 0)
                        topic, pos = _string(content, 4)
                        _, pos = _string(content, pos)  # message encoding (cdr)
                        (n,) = struct.unpack_from("<I", content, pos)
                        channels[cid] = (topic, sid, _qos_of(content[pos + 4: pos + 4 + n]))
                    elif opcode == _MESSAGE:
                        cid, _, log_time = struct.unpack_from("<HIQ", content, 0)
                        messages.append((log_time, cid, content[22:]))
                except (struct.error, UnicodeDecodeError):
                    continue  # a garbled record: the others still count
        if not _closed(file):
            notes.append(f"{file.name} is not closed (an interrupted recording or copy): {len(messages) - before} "
                         f"messages read from its {size} bytes, up to the last complete one")
    usable = [m for m in messages if m[1] in channels and channels[m[1]][1] in schemas]
    if not usable:
        raise ValueError("no complete message before the cut")
    usable.sort(key=lambda m: m[0])
    tmp = tempfile.TemporaryDirectory(prefix="langgs-salvage-")
    try:
        out = Path(tmp.name) / bag_dir.name
        writer = Writer(out, version=9, storage_plugin=StoragePlugin.MCAP)
        writer.open()
        connections = {}
        store = get_typestore(Stores.ROS2_HUMBLE)
        for cid, (topic, sid, qos) in channels.items():
            if sid in schemas:
                name, encoding, definition = schemas[sid]
                if name not in store.types and encoding == "ros2msg":
                    store.register(get_types_from_msg(definition, name))  # the recording's own definition
                connections[cid] = writer.add_connection(topic, name, typestore=store,
                                                         offered_qos_profiles=parse_qos(qos) if qos else ())
        for log_time, cid, data in usable:
            writer.write(connections[cid], log_time, data)
        writer.close()
    except BaseException:
        tmp.cleanup()
        raise
    if not (bag_dir / "metadata.yaml").is_file():
        notes.append(f"{bag_dir} has no metadata.yaml (the recorder did not close it): rebuilt from the MCAP data")
    notes.append(f"recovered {len(usable)} messages over {(usable[-1][0] - usable[0][0]) / 1e9:.1f} s")
    return SalvagedBag(out, notes, tmp)
