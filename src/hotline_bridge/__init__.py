"""hotline-bridge: hands a citizen's live call between the 12345 hotline and the 110 desk.

The package reads top-down, each layer importing only those below it (enforced by the
import-linter contracts in ``pyproject.toml``):

``runtime``
    the running service: the composition root (``app``) that lists the capabilities and calls
    each one's ``install``, the CLI, the AMI command ``interpreter``, the ``switchboard`` that
    hands PBX events to the capabilities in order, logs and metrics. The only user of ``ami``.
feature capabilities: ``transfers``, ``conferences``, ``workorders``, ``partners``, ``agi``,
``overflow``
    carry-number transfer, three-way calls, work orders and duty-line reminders, the partner
    link, the dialplan's FastAGI hooks, overflow to remote seats. Each has the same shape:
    ``machine`` (pure state machine, where it has one), ``service``, ``api`` (its HTTP
    resource) and ``plugin.install(app, deps)``. Siblings never import each other.
``deps``
    what the runtime gives every feature capability (settings, the PBX port, calls, records).
``handoffs``
    the structured handoff record (model, store, views, API) and the book of handoffs in flight
    on live calls, which transfers and three-way calls share.
``calls``
    the live call model, built from AMI events.
``catalog``, ``directory``
    the matter catalog (data) and the routing advisor (``POST /v1/route``); the linkage
    directory (targets as data) and the pure dial-plan resolution every hand-over uses.
``web``, ``config``
    the HTTP edge (errors, auth, bodies, OpenAPI) and the settings.
``core``
    the vocabulary: commands and results, PBX events, outcomes, refusals, principals, privacy
    masking, safe text fields, jurisdictions; and the ports a capability uses to reach the PBX.

``ami`` is the AMI edge, self-contained. Demo, drill, bench and sandbox tooling are not part of
the package: they live in the checkout's ``lab/``.
"""

__version__ = "0.1.0"
