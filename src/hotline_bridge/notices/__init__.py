"""Mutual notification of major emergencies (互相通报): a notice to linked platforms (a record of
kind ``notice`` pushed, receipts back) and reminder calls to chosen plain lines.

``machine`` is the pure core so far: the plan (who is notified how, from the directory) and the
notice's progress over its recipients. The service, API and PBX wiring are still to come.
"""
