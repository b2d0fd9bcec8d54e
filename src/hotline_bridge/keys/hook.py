"""The FastAGI edge of the phone keys: route ``key``, run by ``[hotline-keys]`` on the agent's leg.

``AGI(agi://bridge/key?key=...,<key name>)`` → sets ``HOTLINE_KEY_RESULT`` (accepted | refused)
and ``HOTLINE_KEY_REASON`` (a short code; never a number); a refused key plays an error beep on
this channel, the agent's: the citizen hears nothing of it.
"""

from __future__ import annotations

import re

from hotline_bridge.agi.server import AgiCall
from hotline_bridge.keys.service import PhoneKeyService

_NAME = re.compile(r"[a-z][a-z0-9_]{1,19}")
REFUSED_SOUND = "beeperr"  # one of Asterisk's core sounds (~0.4 s)
SOUND_BUDGET_S = 1.0  # the longest the beep may take, on top of the hook's own budget


class KeyHook:
    def __init__(self, service: PhoneKeyService) -> None:
        self._service = service

    async def key(self, call: AgiCall) -> None:
        given = call.args[0] if call.args else ""
        # The name comes from the dialplan's ${EXTEN}: anything off the key alphabet is simply
        # no key (and never reaches a log line as given).
        name = given if _NAME.fullmatch(given) else "?"
        outcome = await self._service.press(name, call.call_id)
        await call.set_variables(
            {"HOTLINE_KEY_RESULT": outcome.result, "HOTLINE_KEY_REASON": outcome.reason}
        )
        if not outcome.accepted:
            await call.command(f'STREAM FILE {REFUSED_SOUND} ""', timeout_s=SOUND_BUDGET_S)
