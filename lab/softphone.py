"""A real softphone as an agent's phone: baresip (Debian's baresip-core), headless.

Nobody here wrote it: it registers nothing (the PBX reaches it at the agent's identify address),
auto-answers, sends real G.711 from a WAV file and dials keys as RFC 4733 DTMF when told to
through its ``cons`` module (UDP datagrams: the key, then 0x04 = key released; without the
release the last digit's end packet is never sent).
"""

from __future__ import annotations

import asyncio
import math
import os
import shutil
import signal
import socket
import struct
import wave
from pathlib import Path

BARESIP = shutil.which("baresip") or "/usr/bin/baresip"
MODULES = "/usr/lib/baresip/modules"
_RELEASE = b"\x04"
_KEY_GAP_S = 0.15  # between digits of one key: well inside Asterisk's featuredigittimeout


def _tone(path: Path, seconds: int = 60) -> None:
    """8 kHz mono 16-bit: baresip's ausine refuses 8 kHz, and the call then closes."""
    rate = 8000
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(
            b"".join(
                struct.pack("<h", int(3000 * math.sin(2 * math.pi * 440 * i / rate)))
                for i in range(rate * seconds)
            )
        )


class Softphone:
    """``await start()``, ``await press("*1")``, ``await stop()``."""

    def __init__(
        self, workdir: Path, user: str, sip_port: int, cons_port: int, *, answer: str = "auto"
    ) -> None:
        self.dir = workdir / f"baresip-{user}"
        self.answer = answer  # "auto", or "manual": it rings until accept()
        self.user = user
        self.sip_port = sip_port
        self.cons_port = cons_port
        self.log_path = self.dir / "baresip.log"
        self.proc: asyncio.subprocess.Process | None = None

    def _configure(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        _tone(self.dir / "voice.wav")
        (self.dir / "config").write_text(
            "\n".join(
                [
                    f"sip_listen 127.0.0.1:{self.sip_port}",
                    f"audio_source aufile,{self.dir / 'voice.wav'}",
                    f"audio_player aufile,{self.dir / 'heard.wav'}",
                    f"module_path {MODULES}",
                    "module g711.so",
                    "module aufile.so",
                    "module cons.so",
                    "module_app account.so",
                    "module_app menu.so",
                    f"cons_listen 127.0.0.1:{self.cons_port}",
                    "",
                ]
            )
        )
        (self.dir / "accounts").write_text(
            f"<sip:{self.user}@127.0.0.1>;regint=0;answermode={self.answer};"
            "audio_codecs=PCMA,PCMU\n"
        )
        (self.dir / "contacts").write_text("")

    async def start(self) -> Softphone:
        self._configure()
        log = self.log_path.open("wb")
        try:
            self.proc = await asyncio.create_subprocess_exec(
                BARESIP,
                "-f",
                str(self.dir),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()
        await self._bound()
        return self

    async def _bound(self, within: float = 10.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while loop.time() < deadline:
            if self.proc is not None and self.proc.returncode is not None:
                raise RuntimeError(f"baresip exited: {self.log_path.read_text(errors='replace')}")
            if "baresip is ready" in self.log_path.read_text(errors="replace"):
                return
            await asyncio.sleep(0.05)
        raise RuntimeError(f"baresip not ready within {within} s")

    async def press(self, key: str) -> None:
        """Dial ``key`` (e.g. ``*1``) on the phone's current call."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for digit in key:
                s.sendto(digit.encode(), ("127.0.0.1", self.cons_port))
                await asyncio.sleep(0.1)
                s.sendto(_RELEASE, ("127.0.0.1", self.cons_port))
                await asyncio.sleep(_KEY_GAP_S)

    async def accept(self) -> None:
        """Pick up the ringing call (the menu's ``a``), as an agent would."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"a", ("127.0.0.1", self.cons_port))

    def ringing(self) -> bool:
        return "Incoming call from" in self.log()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        with_group = os.getpgid(self.proc.pid)
        os.killpg(with_group, signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), 5)
        except TimeoutError:
            os.killpg(with_group, signal.SIGKILL)
            await self.proc.wait()
