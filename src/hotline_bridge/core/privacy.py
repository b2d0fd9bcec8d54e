"""Personal data rules: how a citizen's number is shown to people who need not see it all.

A citizen's number and words are personal data. Logs and list views show a masked number
(``138****8000``); only a role that needs the full number gets it, and reads of confidential
records are audited by the handoff store.
"""

from __future__ import annotations

import re

# Mainland mobile numbers (11 digits starting 1[3-9]) and landlines with trunk prefix 0
# (10-12 digits). Digit-runs adjacent to other digits are not numbers on their own (timestamps,
# Asterisk Uniqueids such as 1764432000.12 have 10 digits before the dot and do not match).
_PHONE_RE = re.compile(r"(?<![0-9])(?:1[3-9][0-9]{9}|0[1-9][0-9]{8,10})(?![0-9])")


def mask_number(number: str | None) -> str:
    """Mask a phone number for display: keep the first 3 and last 4 digits of long numbers."""
    if not number:
        return ""
    if len(number) >= 8:
        return f"{number[:3]}{'*' * (len(number) - 7)}{number[-4:]}"
    if len(number) > 4:
        # Short numbers (extensions, 110, 12345) are not personal; longer fragments lose the middle.
        return f"{number[:1]}{'*' * (len(number) - 2)}{number[-1:]}"
    return number


def mask_text(text: str) -> str:
    """Mask every phone number found inside free text (a safety net for log lines)."""
    return _PHONE_RE.sub(lambda m: mask_number(m.group(0)), text)


def contains_phone_number(text: str) -> bool:
    return _PHONE_RE.search(text) is not None
