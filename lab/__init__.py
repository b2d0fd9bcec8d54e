"""The lab: drive the sandbox PBX with SIPp parties and the bridge over its API.

Tooling for QA, the demo, drills and the tests, used from a checkout of the repository (it finds
``asterisk/`` and ``sipp_scenarios/`` next to ``src/``). Nothing here runs in production.

- ``sandbox``: the sandbox Asterisk PBX. ``Sandbox`` drives ``asterisk/sandbox.py`` as a
  subprocess (start/stop/restart/rx/status); ``sandbox_module()`` imports that file for its pure
  functions (``load_topology``, ``render_files``, ...).
- ``sipp``: ``SippProcess`` runs a scenario of ``sipp_scenarios/`` as an asyncio subprocess
  (always on loopback, all trace files in a work dir) and parses what it saw.
- ``ami``: ``AmiSession``, a tiny raw AMI client with an event log to wait on, independent of the
  product's own AMI edge (so it can check that edge from the outside).
- ``calls``: the topology's SIPp peers (``agent_uas``, ``citizen_uac``, ``partner_uas``) and AMI
  waits (``wait_bridged``, ``is_user_event``, ``hang_up_leftovers``).
- ``bridge``: hotline-bridge as a real process, and a small HTTP client for its API.
"""
