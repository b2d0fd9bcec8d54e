"""hotline-bridge: hands a citizen's live call between the 12345 hotline and the 110 desk.

The package is split by capability: ``ami`` (the Asterisk Manager edge), ``calls`` (the live call
model), ``transfers`` (carry-number transfer), ``conferences`` (three-way calls), ``handoffs``
(the structured record) and the service shell in ``app``.
"""

__version__ = "0.1.0"
