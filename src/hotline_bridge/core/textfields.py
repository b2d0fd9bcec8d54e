"""Text types for values that cross a boundary (HTTP in, AMI/SIP/SQL out).

``SafeLine`` is for anything that may reach an AMI field or a SIP header: no control characters
at all (AMI has no escaping; a CR/LF would start a new header or action). ``SafeText`` is for free
narrative kept in the record: LF and tab are allowed (CRLF is normalised to LF by the record
model before this check), other control characters are not.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field

_ANY_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_CONTROL_BUT_NEWLINES = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def _no_control(value: str) -> str:
    if _ANY_CONTROL.search(value):
        raise ValueError("control characters (CR, LF, NUL, ...) are not allowed here")
    return value


def _no_control_but_newlines(value: str) -> str:
    if _CONTROL_BUT_NEWLINES.search(value):
        raise ValueError("control characters other than line breaks and tabs are not allowed")
    return value


SafeLine = Annotated[str, AfterValidator(_no_control), Field(max_length=200)]
SafeText = Annotated[str, AfterValidator(_no_control_but_newlines), Field(max_length=8000)]
PhoneNumber = Annotated[str, Field(pattern=r"^\+?[0-9]{3,20}$")]
