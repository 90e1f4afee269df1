"""image_transport's ``compressedDepth`` format, decoded and encoded as its plugin does
(ros-perception/image_transport_plugins, ``compressed_depth_image_transport/src/codec.cpp``, humble
and rolling; Jazzy's matches rolling).

A ``sensor_msgs/CompressedImage`` on ``<depth topic>/compressedDepth`` whose ``format`` is
``"<encoding>; compressedDepth"`` (Humble: PNG) or ``"<encoding>; compressedDepth png|rvl"``
(Iron and later). ``data`` starts with the plugin's 12-byte ``ConfigHeader`` (int32 format,
float32 ``depthParam[2]``), then the image:

* 16UC1 / mono16 (millimetres): the raw uint16 image, values beyond the publisher's ``depth_max``
  zeroed;
* 32FC1 (metres): inverse depth quantised to uint16, ``q = A / d + B`` with ``A = z0 (z0 + 1)``,
  ``B = 1 - A / depth_max`` (``depthParam``), 0 for NaN or beyond ``depth_max``; decoded as
  ``d = A / (q - B)``;

either PNG or RVL (Wilson's run-length / variable-length coding of zeros and deltas, prefixed by
uint32 cols and rows).
"""

from __future__ import annotations

import struct
from typing import Any

import cv2
import numpy as np

from langgs_ros.errors import InputError

__all__ = ["is_compressed_depth", "decode_compressed_depth", "encode_compressed_depth", "rvl_encode", "rvl_decode"]

_HEADER = struct.Struct("<iff")  # compressionFormat (INV_DEPTH = 0), depthParam[0], depthParam[1]
_INV_DEPTH = 0


def is_compressed_depth(msg: Any) -> bool:
    """Whether a CompressedImage carries image_transport's compressedDepth format."""
    return "compresseddepth" in str(getattr(msg, "format", "")).lower()


def _format(msg: Any) -> tuple[str, str]:
    """(image encoding, 'png' or 'rvl') of a compressedDepth message's ``format``."""
    text = str(msg.format)
    encoding, _, rest = text.partition(";")
    rest = rest.strip().lower()
    if not rest.startswith("compresseddepth"):
        raise InputError(f"CompressedImage format '{text}' is not compressedDepth")
    codec = rest[len("compresseddepth"):].strip() or "png"
    if codec not in ("png", "rvl"):
        raise InputError(f"compressedDepth codec '{codec}' is not supported (png, rvl)")
    return encoding.strip(), codec


def decode_compressed_depth(msg: Any, max_pixels: int, min_depth_m: float = 0.0,
                            max_depth_m: float = np.inf) -> np.ndarray:
    """compressedDepth CompressedImage -> [H, W] float32 metres, NaN = invalid (as
    :func:`~langgs_ros.io.image_codec.decode_depth`). Raises InputError for anything malformed,
    and before decoding for an image declaring more than ``max_pixels``."""
    encoding, codec = _format(msg)
    raw = np.frombuffer(memoryview(msg.data), np.uint8) if not isinstance(msg.data, np.ndarray) else msg.data.view(np.uint8)
    if raw.size <= _HEADER.size:
        raise InputError(f"compressedDepth message of {raw.size} bytes holds no image")
    _, quant_a, quant_b = _HEADER.unpack(raw[: _HEADER.size].tobytes())
    payload = raw[_HEADER.size:]
    if codec == "rvl":
        if payload.size < 8:
            raise InputError("RVL compressedDepth image without its size")
        cols, rows = struct.unpack("<II", payload[:8].tobytes())
        if rows == 0 or cols == 0 or rows * cols > max_pixels or rows * cols > 5 * payload.size:
            raise InputError(f"RVL compressedDepth image declares {cols}x{rows} pixels in {payload.size} bytes")
        q = rvl_decode(payload[8:], rows * cols).reshape(rows, cols)
    else:
        if payload[:8].tobytes() == b"\x89PNG\r\n\x1a\n" and payload.size >= 24:
            width, height = struct.unpack(">II", payload[16:24].tobytes())
            if width * height > max_pixels:
                raise InputError(f"compressedDepth image declares {width}x{height} pixels, over "
                                 f"input.max_image_pixels={max_pixels}")
        q = cv2.imdecode(payload, cv2.IMREAD_UNCHANGED)
        if q is None or q.dtype != np.uint16 or q.ndim != 2:
            raise InputError(f"compressedDepth PNG of {payload.size} bytes does not decode to a 16-bit image")
    if encoding == "32FC1":
        if not (np.isfinite(quant_a) and np.isfinite(quant_b)):
            raise InputError("compressedDepth 32FC1 image with non-finite quantisation parameters")
        with np.errstate(divide="ignore", invalid="ignore"):
            depth = np.float32(quant_a) / (q.astype(np.float32) - np.float32(quant_b))
        depth[q == 0] = np.nan
    elif encoding in ("16UC1", "mono16"):
        depth = q.astype(np.float32) * 0.001
    else:
        raise InputError(f"compressedDepth encoding '{encoding}' is not a depth encoding (16UC1, mono16, 32FC1)")
    with np.errstate(invalid="ignore"):
        depth[~np.isfinite(depth) | (depth <= max(min_depth_m, 0.0)) | (depth > max_depth_m)] = np.nan
    return depth


def encode_compressed_depth(depth: np.ndarray, encoding: str, codec: str = "png", depth_max: float = 10.0,
                            depth_quantization: float = 100.0, png_level: int = 9) -> tuple[str, bytes]:
    """(``format``, ``data``) of the compressedDepth message image_transport's publisher makes of a
    depth image (``encoding`` 32FC1 metres, or 16UC1 millimetres), with its default ``depth_max``
    10 m and ``depth_quantization`` 100; ``codec`` png (Humble's only one) or rvl."""
    if encoding == "32FC1":
        a = np.float32(depth_quantization * (depth_quantization + 1.0))
        b = np.float32(1.0 - a / np.float32(depth_max))
        d = np.asarray(depth, np.float32)
        with np.errstate(divide="ignore", invalid="ignore"):
            q = np.where(d < np.float32(depth_max), a / d + b, 0)
        image = np.clip(q, 0, 65535).astype(np.uint16)  # the C++ float -> ushort conversion truncates
        params = (a, b)
    elif encoding in ("16UC1", "mono16"):
        image = np.asarray(depth, np.uint16).copy()
        image[image > np.uint16(min(65535, int(depth_max * 1000.0)))] = 0
        params = (0.0, 0.0)
    else:
        raise ValueError(f"compressedDepth needs 16UC1 or 32FC1, got {encoding}")
    if codec == "png":
        ok, buf = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, png_level])
        if not ok:
            raise ValueError("PNG encoding failed")
        body = buf.tobytes()
    elif codec == "rvl":
        rows, cols = image.shape
        body = struct.pack("<II", cols, rows) + rvl_encode(image.reshape(-1))
    else:
        raise ValueError(f"unknown compressedDepth codec {codec}")
    fmt = f"{encoding}; compressedDepth" + ("" if codec == "png" else f" {codec}")
    return fmt, _HEADER.pack(_INV_DEPTH, *params) + body


_RVL = None


def _rvl():  # noqa: ANN202 - numba dispatchers
    """RVL coder compiled by numba on first use (a Python loop over 300k pixels takes a second)."""
    global _RVL
    if _RVL is None:
        from numba import njit

        @njit(cache=True, nogil=True)
        def decode(words, n):  # noqa: ANN001, ANN202
            out = np.zeros(n, np.uint16)
            state = np.zeros(3, np.int64)  # word index, nibbles left in the word, the word
            filled, previous, i = 0, 0, 0

            def vle(words, state):  # noqa: ANN001, ANN202
                value, bits = 0, 29
                while True:
                    if state[1] == 0:
                        if state[0] >= words.size:
                            return -1
                        state[2] = np.int64(words[state[0]]) & 0xFFFFFFFF
                        state[0] += 1
                        state[1] = 8
                    nibble = state[2] & 0xF0000000
                    value |= ((nibble << 1) & 0xFFFFFFFF) >> bits  # as C's 32-bit unsigned shift
                    state[2] = (state[2] << 4) & 0xFFFFFFFF
                    state[1] -= 1
                    bits -= 3
                    if not nibble & 0x80000000:
                        return value

            while filled < n:
                zeros = vle(words, state)
                if zeros < 0 or filled + zeros > n:
                    return out, False
                filled += zeros  # already zero
                i = filled
                nonzeros = vle(words, state)
                if nonzeros < 0 or filled + nonzeros > n:
                    return out, False
                for _ in range(nonzeros):
                    positive = vle(words, state)
                    if positive < 0:
                        return out, False
                    delta = (positive >> 1) ^ -(positive & 1)
                    previous = (previous + delta) & 0xFFFF
                    out[i] = previous
                    i += 1
                filled += nonzeros
            return out, True

        @njit(cache=True, nogil=True)
        def encode(values):  # noqa: ANN001, ANN202
            words = np.zeros(values.size + 4, np.uint32)
            state = np.zeros(3, np.int64)  # words written, nibbles in the word, the word

            def put(value, words, state):  # noqa: ANN001, ANN202
                while True:
                    nibble = value & 0x7
                    value >>= 3
                    if value:
                        nibble |= 0x8
                    state[2] = ((state[2] << 4) | nibble) & 0xFFFFFFFF
                    state[1] += 1
                    if state[1] == 8:
                        if state[0] >= words.size:
                            return
                        words[state[0]] = state[2]
                        state[0] += 1
                        state[1] = 0
                        state[2] = 0
                    if not value:
                        return

            i, n, previous = 0, values.size, 0
            while i < n:
                zeros = 0
                while i < n and values[i] == 0:
                    zeros += 1
                    i += 1
                put(zeros, words, state)
                nonzeros = 0
                while i + nonzeros < n and values[i + nonzeros] != 0:
                    nonzeros += 1
                put(nonzeros, words, state)
                for _ in range(nonzeros):
                    current = np.int64(values[i])
                    delta = current - previous
                    put((delta << 1) ^ (delta >> 31), words, state)
                    previous = current
                    i += 1
            if state[1]:
                words[state[0]] = (state[2] << (4 * (8 - state[1]))) & 0xFFFFFFFF
                state[0] += 1
            return words[: state[0]]

        _RVL = (decode, encode)
    return _RVL


def rvl_decode(data: np.ndarray, n: int) -> np.ndarray:
    """RVL bytes (little-endian 32-bit words) -> ``n`` uint16 values; raises InputError if short or garbled."""
    usable = data.size - data.size % 4
    words = np.frombuffer(np.ascontiguousarray(data[:usable]).tobytes(), "<u4")
    out, ok = _rvl()[0](words, n)
    if not ok:
        raise InputError(f"RVL compressedDepth data of {data.size} bytes ends before its {n} pixels")
    return out


def rvl_encode(values: np.ndarray) -> bytes:
    """uint16 values -> RVL bytes, as the plugin's ``RvlCodec::CompressRVL``."""
    return _rvl()[1](np.ascontiguousarray(values, np.uint16)).astype("<u4").tobytes()
