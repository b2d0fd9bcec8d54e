"""The dialplan's FastAGI hooks: Asterisk asks the bridge about a call before queueing it.

``dialplans/hotline.conf`` calls two hooks over FastAGI (``AGI(agi://127.0.0.1:4573/<hook>)``):

- ``entry``, for a citizen calling the hotline, sets ``CALL_JURISDICTION`` (属地, from the number
  dialled or the trunk) and ``CALL_NUISANCE`` (滋扰治理: the number has repeated nuisance records)
  and opens the call's row in the call log;
- ``receive``, for a call the partner platform hands over with ``X-Handoff-Id``, looks the record
  up (waiting briefly while its push is in flight) and sets ``HANDOFF_URGENCY``, ``HANDOFF_CLASS``,
  ``HANDOFF_JURISDICTION`` and ``HANDOFF_RECEIVED_ID``; the dialplan queues urgent matters ahead.

Layers: ``protocol`` (pure: the AGI wire format, value quoting and refusal), ``decisions`` (pure:
jurisdiction, nuisance and urgency rules, the variables to set), ``hooks`` (thin I/O: store
lookups, then the variables, then the call log after the answer), ``server`` (the FastAGI server
on panoramisk's ``fast_agi``, with its defects worked around: bounded reads, deadlines, loopback).

Whatever happens here, the call goes on: the dialplan continues to the queue when the server is
down, slow, or errs (AGI then only sets ``AGISTATUS``); the server answers within
``[agi].request_timeout_s`` or closes the connection.
"""
