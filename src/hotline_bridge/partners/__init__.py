"""The partner link: handoffs flow between the 12345 and 110 sites, signed, durable, idempotent.

``signing`` (pure) signs and verifies requests; ``link`` drains the store's outbox to the partner
site with retries; ``api`` receives the partner's pushes. A handoff is written with its outbox
row in one transaction, so a push can be late but never lost, and the receiver treats the same
push twice as one.
"""
