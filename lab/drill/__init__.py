"""Load drill: citizens talking G.711, agents pressing the hotkeys, a 110 desk checking every call.

    python -m lab.drill --rate 20 --duration 60 --mix 0.1     (make drill)

Against the running sandbox PBX, with the topology's [agent_pool] and [drill] peers (their own
carrier trunk, queue, 200 agents and 110 desk, so the tests' peers and ports are never touched):

- a SIPp citizen UAC places ``rate`` calls/s for ``duration`` s, each from its own number, each
  STREAMING real G.711 A-law audio once answered (``rtp_stream`` of the payload of sip-tester's
  ``g711a.pcap``), and hangs up after ``hold`` s;
- ONE SIPp UAS answers for every pool agent (by contact user) and echoes the audio (-rtp_echo);
- the drill's 110 desk (``partner_drill_uas.xml``) answers a handoff only if From and
  P-Asserted-Identity carry the same number and X-Handoff-Id is present, logging each INVITE's
  arrival time (``<gettimeofday>``) and echoing audio;
- the HOTKEY DRIVER watches the PBX through the admin AMI (``BridgeEnter``: pushed to us the
  moment the queue bridges citizen and agent, sub-millisecond, and no load on the bridge; polling
  ``GET /v1/calls`` would add up to a poll interval and cost the bridge CPU per poll) and at once
  presses carry-transfer for the agent through the bridge's HTTP API, or for a ``mix`` share of
  the calls three-way, then leave once 110 has joined the room.

Afterwards every call is checked: the number the 110 desk got (From == PAI) is the citizen's
(as the PBX saw it when the call reached the agent), X-Handoff-Id is the handoff the API returned,
and the bridge's own record (transfer/conference state, handoff record's citizen number, read as
a supervisor) agrees. Latencies (hotkey -> API answer, -> INVITE at 110, -> 110 bridged with the
citizen) and the CPU of the bridge and of Asterisk (``/proc/<pid>/stat`` over the run) go into
``report.json``, a ``latency.png`` and ``calls.jsonl`` under the results directory.

Exit status: 0 all good; 1 a citizen was dropped (did not end their own call after the hold
time) or a carried number could not be verified; 2 the drill could not run.

With ``targets`` (``--targets`` / ``--mix-preset network``; ``lab.drill.mix``) the transfers are
spread over linkage targets x jurisdictions, each target its own SIPp desk
(``desk_drill_uas.xml``), and every handoff must arrive at the desk and number the drill's
directory names, with the citizen's number in From and PAI: misrouted, wrong-number and missing
handoffs are counted per pair and fail the drill.

``mode`` "raw" and "refer" are the benchmark's baselines (``lab.bench``): the same load, with the
transfer issued by a minimal raw AMI client (the bridge's own Setvar + BlindTransfer actions,
pipelined, no middleware) or by the agent's phone itself (SIP REFER, ``agent_refer_uas.xml``).
"""

from __future__ import annotations

from ..sandbox import DEFAULT_TOPOLOGY
from .driver import Drill, run_drill
from .options import (
    DEFAULT_RESULTS,
    DRILL_BRIDGE_PORT,
    MODES,
    DrillCall,
    DrillError,
    DrillOptions,
    _gettimeofday,
    machine_description,
)
from .report import percentiles, plot_latencies, summary

__all__ = [
    "DEFAULT_RESULTS",
    "DEFAULT_TOPOLOGY",
    "DRILL_BRIDGE_PORT",
    "MODES",
    "Drill",
    "DrillCall",
    "DrillError",
    "DrillOptions",
    "_gettimeofday",
    "machine_description",
    "percentiles",
    "plot_latencies",
    "run_drill",
    "summary",
]
