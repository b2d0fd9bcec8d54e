"""Test harness helpers for hotline-bridge (importable as ``support``: tests/ is on sys.path,
put there by tests/conftest.py).

- ``support.sandbox``: the sandbox Asterisk PBX. ``Sandbox`` drives ``asterisk/sandbox.py`` as a
  subprocess (start/stop/restart/rx/status); ``sandbox_module()`` imports that file with
  importlib for its pure functions (``load_topology``, ``render_files``, ...).
- ``support.sipp``: ``SippProcess`` runs a scenario of ``sipp_scenarios/`` as an asyncio
  subprocess (always on loopback, all trace files in a temp dir) and parses what it saw.
- ``support.ami``: ``AmiSession``, a tiny raw asyncio AMI client for tests, independent of the
  product's own AMI client.
- ``support.calls``: the topology's SIPp peers (``agent_uas``, ``citizen_uac``, ``partner_uas``)
  and AMI waits (``wait_bridged``, ``is_user_event``, ``hang_up_leftovers``).

Fixtures (tests/conftest.py): ``topology`` (dict), ``sandbox`` (session: the running PBX; started
here if needed, stopped at the end only if this session started it), ``admin_ami`` (an
``AmiSession`` as sandbox-admin, per test). Tests marked ``@pytest.mark.pbx`` get the sandbox
automatically; they are skipped when the machine cannot run it (not root, no sipp) unless
HOTLINE_REQUIRE_PBX=1, which turns that into an error. HOTLINE_SKIP_PBX=1 skips them on purpose.
HOTLINE_SANDBOX_TOPOLOGY=path/to/other.toml runs the session against another site's PBX.
"""
