"""Personal data rules: how a citizen's number is shown to people who need not see it all.

A citizen's number and words are personal data. Logs and list views show a masked number
(``138****8000``); only a role that needs the full number gets it, and reads of confidential
records are audited by the handoff store.
"""

from __future__ import annotations

import re

# Mainland mobile numbers (11 digits starting 1[3-9]), with or without the country code (+86,
# 86, 0086), and landlines with the trunk prefix 0 (area code 2-3 digits after the 0, then 7-8
# digits). People write them with spaces or hyphens between the groups ("138 0013 8000",
# "010-12345678", "+86 138-0013-8000"): a separator may stand between any two digits. Digit runs
# glued to other digits or letters are not numbers on their own (timestamps, Asterisk Uniqueids
# such as 1764432000.12, ids), so the short service numbers (110, 12345) and dates never match.
_SEP = r"[ \-]?"
_MOBILE = r"1" + _SEP + r"[3-9]" + "".join(_SEP + r"[0-9]" for _ in range(9))
_LANDLINE = (
    r"0"
    + _SEP
    + r"[1-9]"
    + "".join(_SEP + r"[0-9]" for _ in range(7))
    + ("(?:" + _SEP + r"[0-9]){0,3}")
)
_COUNTRY = r"(?:(?:\+|00)?86" + _SEP + ")?"
_PHONE_RE = re.compile(
    r"(?<![0-9A-Za-z+])" + _COUNTRY + r"(?:" + _MOBILE + "|" + _LANDLINE + r")(?![0-9A-Za-z])"
)


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
    """Mask every phone number found inside free text (log lines, notes, derived state)."""
    return _PHONE_RE.sub(lambda m: _mask_written(m.group(0)), text)


def _mask_written(found: str) -> str:
    """Mask a number as it was written: the digits lose their middle, separators stay."""
    digits = [i for i, c in enumerate(found) if c.isdigit()]
    keep = set(digits[:3] + digits[-4:])
    return "".join("*" if i in digits and i not in keep else c for i, c in enumerate(found))


def contains_phone_number(text: str) -> bool:
    return _PHONE_RE.search(text) is not None
