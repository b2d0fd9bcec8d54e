"""The bridge's vocabulary: pure types every layer may use, importing nothing above it.

Commands sent to the PBX and their results (``commands``), PBX events (``events``), partner
outcomes (``outcomes``), domain refusals (``errors``), who is acting (``principal``), personal-data
masking (``privacy``), safe text fields (``textfields``) and the closed vocabularies
(``vocabulary``: jurisdictions, category codes).
"""
