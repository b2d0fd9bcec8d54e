"""Overflow to remote seats (远程话务座席): while the citizens' queue is short of seats, new
citizen calls go to a remote seat group (another PBX), carrying the citizen's number and the
entry hook's data; they stop going there once the queue recovers. ``machine`` (pure
hysteresis), ``service`` (the queue poll and the PBX switch), ``api`` (status), ``plugin``."""
