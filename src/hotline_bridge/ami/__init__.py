"""The Asterisk Manager Interface edge: the only code in the bridge that talks AMI.

It owns the TCP session to Asterisk (login, keep-alive, reconnect with backoff, resync hooks),
action/response correlation with timeouts, in-order event delivery with name filtering, and the
refusal of any field that could inject AMI protocol lines. It replaces panoramisk 1.4's
protocol, manager and actions (each module says why; ActionIDs keep panoramisk's form).
"""

from hotline_bridge.ami.client import AmiClient, AmiState
from hotline_bridge.ami.errors import (
    AmiActionFailed,
    AmiDisconnected,
    AmiError,
    AmiFieldError,
    AmiTimeout,
)
from hotline_bridge.ami.fields import validate_action_name, validate_fields
from hotline_bridge.ami.messages import AmiEvent, AmiResponse
from hotline_bridge.ami.stats import AmiStats

__all__ = [
    "AmiActionFailed",
    "AmiClient",
    "AmiDisconnected",
    "AmiError",
    "AmiEvent",
    "AmiFieldError",
    "AmiResponse",
    "AmiState",
    "AmiStats",
    "AmiTimeout",
    "validate_action_name",
    "validate_fields",
]
