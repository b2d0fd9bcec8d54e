"""The linkage directory (联动单位): the targets a call or a notice can be handed to, as data.

``model`` holds the pure types and :func:`model.resolve` (target + jurisdiction + override ->
the dial plan entry, or a refusal with a reason); ``loader`` reads and validates the TOML file
(``targets.toml`` is the sandbox's seed), reporting ``path:line: field: problem``.
"""
