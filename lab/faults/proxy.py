"""A TCP proxy between the bridge and AMI that the fault drill can sever.

Every connection the bridge opens is relayed to Asterisk's AMI. ``cut()`` closes both sides of
every relayed connection at once (the bridge sees its socket drop, as on a real link cut) and can
refuse new connections for a while. The proxy also reads the bridge's actions as they pass, so
the drill can count a BlindTransfer sent twice for one channel.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter


class AmiProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._refuse_until = 0.0
        self.cuts = 0
        self.connections = 0
        # (PBX generation, action name, channel) -> how many times the bridge sent it. Asterisk
        # names channels afresh after a restart, so a name is unique within a generation only.
        self.actions: Counter[tuple[int, str, str]] = Counter()
        self.generation = 0

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        self._server = await asyncio.start_server(self._serve, host, port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def next_generation(self) -> None:
        self.generation += 1

    def cut(self, refuse_for_s: float = 0.0) -> int:
        """Sever every relayed connection now; refuse new ones for ``refuse_for_s``."""
        self.cuts += 1
        loop = asyncio.get_running_loop()
        self._refuse_until = loop.time() + refuse_for_s
        severed = len(self._pairs)
        for down, up in list(self._pairs):
            for w in (down, up):
                with contextlib.suppress(Exception):
                    w.transport.abort()  # RST-like: no orderly goodbye, as a cable pull
        self._pairs.clear()
        return severed

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if asyncio.get_running_loop().time() < self._refuse_until:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            return
        self.connections += 1
        pair = (writer, up_writer)
        self._pairs.add(pair)
        try:
            await asyncio.gather(
                self._pipe(reader, up_writer, watch=True),
                self._pipe(up_reader, writer, watch=False),
            )
        except asyncio.CancelledError:
            pass  # the proxy is closing: end quietly (asyncio's server logs a cancelled handler)
        finally:
            self._pairs.discard(pair)
            for w in pair:
                w.transport.abort()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, watch: bool
    ) -> None:
        pending = b""
        try:
            while data := await reader.read(65536):
                writer.write(data)
                if watch:
                    pending = self._watch(pending + data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.transport.abort()

    def _watch(self, buffered: bytes) -> bytes:
        *frames, rest = buffered.split(b"\r\n\r\n")
        for frame in frames:
            fields = {}
            for line in frame.decode("utf-8", "replace").split("\r\n"):
                key, _, value = line.partition(":")
                fields[key.strip().lower()] = value.strip()
            action = fields.get("action", "")
            if action in ("BlindTransfer", "Originate", "Redirect", "Hangup"):
                self.actions[(self.generation, action, fields.get("channel", ""))] += 1
        return rest

    def doubled(self, action: str) -> dict[str, int]:
        """Channels this action was sent for more than once."""
        return {f"{g}:{ch}": n for (g, a, ch), n in self.actions.items() if a == action and n > 1}
