"""Structured logging: JSON lines in production, readable lines in a terminal, never a raw number.

Every string that reaches a log line goes through :func:`~hotline_bridge.core.privacy.mask_text`: a
citizen number that slipped into an event field is masked anyway; fields that hold secrets are
dropped. Code should still log ``citizen=mask_number(n)`` explicitly: the filter is a safety net.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from hotline_bridge.core.privacy import contains_phone_number, mask_text

_SECRET_KEYS = frozenset({"secret", "token", "password", "authorization", "api_key"})
# A credential quoted inside free text: aiohttp's parser, refusing a malformed request, logs the
# offending header line (an Authorization header with its token) in its exception.
_CREDENTIAL = re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=-]{8,}")


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return mask_text(_CREDENTIAL.sub(r"\1\2[redacted]", value))
    if isinstance(value, dict):
        return {k: ("[redacted]" if k in _SECRET_KEYS else _scrub(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


def scrub_personal_data(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    if _plainly_clean(event_dict):
        return event_dict
    for key in list(event_dict):
        if key.lower() in _SECRET_KEYS:
            event_dict[key] = "[redacted]"
        else:
            event_dict[key] = _scrub(event_dict[key])
    return event_dict


_SCALARS = (int, float, bool, type(None))


def _plainly_clean(event_dict: MutableMapping[str, Any]) -> bool:
    """True if nothing in the line would be masked or dropped: no secret key, no nested value,
    and neither pattern anywhere in its strings, looked for once over them all ("\n" between
    values: it is no separator inside a number, so no match spans two values). Most lines are
    ids and states; scrubbing each of their values alone cost half of a line's logging."""
    texts: list[str] = []
    for key, value in event_dict.items():
        if key.lower() in _SECRET_KEYS:
            return False
        if isinstance(value, str):
            texts.append(value)
        elif not isinstance(value, _SCALARS):
            return False
    joined = "\n".join(texts)
    return _CREDENTIAL.search(joined) is None and not contains_phone_number(joined)


def configure_logging(fmt: str = "auto", level: str = "info") -> None:
    """Configure structlog (and stdlib logging, for aiohttp and panoramisk) once at start-up."""
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    renderer: Any = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
    ]
    structlog.configure(
        processors=[*shared, scrub_personal_data, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    # Third-party stdlib loggers go through the same scrubbing and renderer.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                scrub_personal_data,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
