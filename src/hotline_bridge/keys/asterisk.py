"""The Asterisk side of the key table, rendered from settings (``hotline-bridge phone-keys``).

Pure text: the ``[applicationmap]`` lines, the ``DYNAMIC_FEATURES`` global that switches them on
for every call, and the agent's ConfBridge menu. ``asterisk/sandbox.py`` renders the same from
the sandbox topology (a test keeps the two equal).
"""

from __future__ import annotations

from collections.abc import Sequence

from hotline_bridge.config.settings import PhoneKeySettings

AGENT_MENU = "hotline_agent_keys"  # the ConfBridge menu the agent joins a three-way room with
KEY_CONTEXT = "hotline-keys"  # dialplans/hotline.conf: the ConfBridge menu's keys run there
# The applicationmap runs the hook directly, not in a Gosub: a Redirect of the agent's channel
# (the three-way key moves the agent into the room) that arrives while a Gosub still runs is
# executed inside that Gosub, which then ends abnormally and hangs the agent up.
KEY_HOOK = "AGI(${HOTLINE_AGI}/key?key=${HOTLINE_AGI_KEY},%s)"


def applicationmap_lines(keys: Sequence[PhoneKeySettings]) -> list[str]:
    # self/callee: only the answering side of a queue call (the agent) can fire it, and the
    # application runs on the agent's channel, so the citizen never hears what it plays.
    return [f"{k.name} => {k.digits},self/callee,{KEY_HOOK % k.name}" for k in keys if k.in_call]


def dynamic_features(keys: Sequence[PhoneKeySettings]) -> str:
    return "#".join(k.name for k in keys if k.in_call)


def agent_menu_lines(keys: Sequence[PhoneKeySettings]) -> list[str]:
    return [f"{k.digits} = dialplan_exec({KEY_CONTEXT},{k.name},1)" for k in keys if not k.in_call]


def asterisk_config(keys: Sequence[PhoneKeySettings]) -> str:
    """What an integrator pastes into the PBX for this key table, with where each part goes."""
    return "\n".join(
        [
            "; features.conf",
            "[applicationmap]",
            *applicationmap_lines(keys),
            "",
            "; extensions.conf [globals] (dialplans/hotline.conf reads them)",
            f"DYNAMIC_FEATURES = {dynamic_features(keys)}",
            f"HOTLINE_AGENT_MENU = {AGENT_MENU}",
            "",
            "; confbridge.conf",
            f"[{AGENT_MENU}]",
            "type = menu",
            *agent_menu_lines(keys),
            "",
        ]
    )
