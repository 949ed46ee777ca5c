"""Sizes a vendor header claims, checked against the file before a reader allocates.

rosettasciio trusts its headers: a truncated Merlin ``.mib`` loads with fewer
frames (a smaller scan, silently), and a NanoMegas blockfile whose header is
damaged asks for hundreds of GiB or builds a task graph so large that it seems to
hang. Each check here reads only the header bytes, computes what the data need,
and refuses, naming what is missing, when the file is shorter.
"""

from __future__ import annotations

import os
import re
import struct

from ..core.errors import FileFormatError

__all__ = ["check_header_claims", "check_mib", "check_blockfile", "mib_frames_promised",
           "BLOCKFILE_HEADER"]

_MIB_PIXEL_BYTES = {"U01": 1, "U08": 1, "U16": 2, "U32": 4}
_FRAMES_RE = re.compile(rb"Frames in Acquisition \(Number\):\s*(\d+)")


def mib_frames_promised(hdr_path: str) -> int | None:
    """Frame count a Merlin ``.hdr`` file records ("Frames in Acquisition"), or None."""
    try:
        with open(hdr_path, "rb") as f:
            text = f.read(65536)
    except OSError:
        return None
    m = _FRAMES_RE.search(text)
    return int(m.group(1)) if m else None


def _frame_list(first: int, last: int) -> str:
    return f"frame {first}" if first == last else f"frames {first} to {last}"


def check_mib(path: str) -> None:
    """Refuse a ``.mib`` file shorter than the frames its headers promise.

    The frame size comes from the first frame header (header length, width,
    height, pixel type); the frame count from the ``.hdr`` beside it when there
    is one. Frames are numbered from 1, as the detector numbers them.
    """
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(768)
    fields = head.split(b",")
    hint = "Check the copy (compare its size with the original), or re-export the acquisition."
    try:
        if fields[0] != b"MQ1":
            raise ValueError
        head_size = int(fields[2])
        width, height = int(fields[4]), int(fields[5])
        kind = fields[6].decode("ascii").strip()
    except (IndexError, ValueError, UnicodeDecodeError):
        raise FileFormatError(path, "does not start with a Merlin frame header (MQ1,...).",
                              "Check that this is a Quantum Detectors .mib file.") from None
    if kind not in _MIB_PIXEL_BYTES:
        return  # raw (R64) frames: their size depends on the counter depth; rosettasciio checks them
    if head_size < 1 or width < 1 or height < 1:
        raise FileFormatError(path, f"has a frame header with impossible sizes (header {head_size} bytes, "
                              f"{width}x{height} pixels).", hint)
    frame_bytes = head_size + width * height * _MIB_PIXEL_BYTES[kind]
    complete, rest = divmod(size, frame_bytes)
    promised = mib_frames_promised(os.path.splitext(path)[0] + ".hdr")
    if promised is not None and complete < promised:
        raise FileFormatError(
            path, f"is truncated: its .hdr promises {promised} frames of {frame_bytes} bytes "
            f"({width}x{height} {kind}), {promised * frame_bytes} bytes in all, but the file has {size} bytes: "
            f"{_frame_list(complete + 1, promised)} of {promised} "
            f"{'is' if complete + 1 == promised else 'are'} missing"
            + (f" (frame {complete + 1} is incomplete)." if rest else "."), hint)
    if promised is None and rest:
        raise FileFormatError(
            path, f"ends {rest} bytes into frame {complete + 1}: frames are {frame_bytes} bytes "
            f"({width}x{height} {kind}), so the last frame is incomplete and the file is truncated.", hint)
    if complete == 0:
        raise FileFormatError(path, f"holds no complete frame ({size} bytes; a frame is {frame_bytes}).", hint)
    # Every frame starts with its own header: the last one read must too, or the
    # frame size assumed from the first header is wrong.
    with open(path, "rb") as f:
        f.seek((complete - 1) * frame_bytes)
        if f.read(3) != b"MQ1":
            raise FileFormatError(path, f"has no frame header where frame {complete} should start "
                                  f"(byte {(complete - 1) * frame_bytes}); its frames are not all "
                                  f"{frame_bytes} bytes.", hint)


#: Blockfile header fields we need, little-endian, in file order (240 bytes in all).
BLOCKFILE_HEADER = struct.Struct("<6sHIIIHHHH")
_BLOCKFILE_HEADER_BYTES = 240


def check_blockfile(path: str) -> None:
    """Refuse a NanoMegas ``.blo`` file whose header claims more than the file holds.

    The header gives the offset of the virtual bright-field image and of the
    patterns, the pattern size and the scan size; each frame is 6 bytes of marker
    plus ``DP_SZ**2`` bytes. Every claim is checked before rosettasciio sizes
    anything from it.
    """
    size = os.path.getsize(path)
    hint = "The header is damaged or the file truncated; check the copy."
    with open(path, "rb") as f:
        head = f.read(_BLOCKFILE_HEADER_BYTES)
    if len(head) < _BLOCKFILE_HEADER_BYTES:
        raise FileFormatError(path, f"is {size} bytes, shorter than a blockfile header "
                              f"({_BLOCKFILE_HEADER_BYTES} bytes).", hint)
    ident, _magic, offset1, offset2, _flags, dp_sz, _rot, nx, ny = BLOCKFILE_HEADER.unpack_from(head)
    if not ident.startswith(b"IMGBL"):
        raise FileFormatError(path, f"does not start with the blockfile mark IMGBLO (found {ident!r}).",
                              "Check that this is a NanoMegas .blo file, or pass format=.")
    if not _BLOCKFILE_HEADER_BYTES <= offset1 <= size:
        raise FileFormatError(path, f"has a header whose first data offset ({offset1}) lies outside "
                              f"[{_BLOCKFILE_HEADER_BYTES}, {size}] (the file's size).", hint)
    if dp_sz < 1 or nx < 1 or ny < 1:
        raise FileFormatError(path, f"has a header with an empty scan or pattern (scan {nx}x{ny}, "
                              f"patterns {dp_sz}x{dp_sz}).", hint)
    frame = 6 + dp_sz * dp_sz
    needed = offset2 + nx * ny * frame
    if offset2 < offset1 or needed > size:
        raise FileFormatError(
            path, f"has a header claiming a {nx}x{ny} scan of {dp_sz}x{dp_sz} patterns from byte {offset2}, "
            f"{needed} bytes in all, but the file has {size} bytes.", hint)


_CHECKS = {"mib": check_mib, "blo": check_blockfile}


def check_header_claims(path: str, fmt: str) -> None:
    """Run the header check of format ``fmt`` (nothing for formats without one)."""
    check = _CHECKS.get(fmt)
    if check is None:
        return
    try:
        check(path)
    except FileFormatError:
        raise
    except OSError as exc:
        raise FileFormatError(path, f"cannot be read ({exc.strerror or exc}).", "Check the file.") from None
