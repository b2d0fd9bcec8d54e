"""RFC 4733 (2833) key presses for SIPp phones: sip-tester's one-digit captures joined.

SIPp 3.6 ignores ``<exec play_dtmf=...>``; a phone presses keys with ``play_pcap_audio``. The
bundled ``/usr/share/sip-tester/dtmf_2833_<digit>.pcap`` files share one SSRC but each carries its
own fixed sequence numbers and timestamps, so playing ``*`` then ``1`` goes backwards and Asterisk
drops the ``1`` as stale. :func:`presses` rewrites them into files whose sequence numbers and
timestamps keep rising across digits and across files (one file per moment the phone presses).
"""

from __future__ import annotations

import struct
from pathlib import Path

DTMF_DIR = Path("/usr/share/sip-tester")
_NAMES = {"*": "star", "#": "pound", **{str(d): str(d) for d in range(10)}}
_GLOBAL_HEADER = 24
_RECORD_HEADER = 16
_RTP_OFFSET = 14 + 20 + 8  # Ethernet, IPv4, UDP (the bundled captures' link type)
_DIGIT_GAP_S = 0.5  # between two digits of one key: well inside featuredigittimeout (1 s)
_DIGIT_GAP_TS = 4000  # the same gap in 8 kHz timestamp units


def _records(digit: str) -> tuple[bytes, list[tuple[float, bytes]]]:
    data = (DTMF_DIR / f"dtmf_2833_{_NAMES[digit]}.pcap").read_bytes()
    header, off, out = data[:_GLOBAL_HEADER], _GLOBAL_HEADER, []
    while off + _RECORD_HEADER <= len(data):
        sec, usec, incl, _orig = struct.unpack("<IIII", data[off : off + _RECORD_HEADER])
        out.append((sec + usec / 1e6, data[off + _RECORD_HEADER : off + _RECORD_HEADER + incl]))
        off += _RECORD_HEADER + incl
    return header, out


def presses(keys: list[str], first_seq: int = 1000, first_ts: int = 160_000) -> list[bytes]:
    """One pcap per entry of ``keys`` (e.g. ``["*2", "*0"]``), numbered as one rising stream."""
    files: list[bytes] = []
    seq, ts, clock = first_seq, first_ts, 1_700_000_000.0
    for key in keys:
        out = bytearray()
        for digit in key:
            header, records = _records(digit)
            if not out:
                out += header
            t0 = records[0][0]
            first_seq_of_digit = struct.unpack(
                ">H", records[0][1][_RTP_OFFSET + 2 : _RTP_OFFSET + 4]
            )[0]
            for when, frame in records:
                rtp = bytearray(frame)
                old_seq = struct.unpack(">H", rtp[_RTP_OFFSET + 2 : _RTP_OFFSET + 4])[0]
                # Retransmitted end packets keep their (shared) sequence number.
                struct.pack_into(
                    ">HI", rtp, _RTP_OFFSET + 2, (seq + old_seq - first_seq_of_digit) & 0xFFFF, ts
                )
                at = clock + (when - t0)
                sec, usec = int(at), round((at - int(at)) * 1e6)
                out += struct.pack("<IIII", sec, usec, len(rtp), len(rtp)) + rtp
            last_seq = struct.unpack(">H", records[-1][1][_RTP_OFFSET + 2 : _RTP_OFFSET + 4])[0]
            seq += last_seq - first_seq_of_digit + 1
            ts += _DIGIT_GAP_TS
            clock += _DIGIT_GAP_S
        files.append(bytes(out))
    return files


def write_presses(workdir: Path, keys: list[str], stem: str = "agent_key") -> list[Path]:
    """``<stem>_1.pcap``, ``<stem>_2.pcap``... in ``workdir`` (SIPp resolves them from its cwd)."""
    paths = []
    for i, data in enumerate(presses(keys), start=1):
        path = workdir / f"{stem}_{i}.pcap"
        path.write_bytes(data)
        paths.append(path)
    return paths
