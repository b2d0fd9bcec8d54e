"""Mutual notification of major emergencies (互相通报): a notice to linked platforms (a record of
kind ``notice`` pushed, receipts back) and reminder calls to chosen plain lines.

``machine`` is the pure core (who is notified how, from the directory; the notice's progress over
its recipients); ``service`` writes the record and rings the lines; ``api`` is
``POST /v1/notices`` and ``GET /v1/notices/{id}``; ``plugin.install`` wires them.
"""
