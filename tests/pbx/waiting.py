"""Waiting on a real PBX without guessing: poll for what must happen, watch for what must not.

``eventually`` returns as soon as the condition holds (fails after ``within``); ``holds`` checks
an absence (no BYE, no second INVITE) throughout a period and fails the moment it breaks, so
neither depends on how fast this shared machine happens to be.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable

Check = Callable[[], bool | Awaitable[bool]]


async def _ok(check: Check) -> bool:
    result = check()
    return bool(await result) if inspect.isawaitable(result) else bool(result)


async def eventually(check: Check, what: str, within: float = 10.0, every: float = 0.05) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await _ok(check):
        if loop.time() > deadline:
            raise AssertionError(f"not within {within:g} s: {what}")
        await asyncio.sleep(every)


async def holds(check: Check, what: str, period: float = 0.5, every: float = 0.05) -> None:
    loop = asyncio.get_running_loop()
    until = loop.time() + period
    while True:
        if not await _ok(check):
            raise AssertionError(f"broke within {period:g} s: {what}")
        if loop.time() >= until:
            return
        await asyncio.sleep(every)
