"""The agent console: a web page served by the bridge, and the session the browser holds.

Static HTML/CSS/JS shipped in the package (no build step, no library), in Chinese by default
with an English toggle, usable by keyboard alone. It drives the same API as any softphone
integration: the hotkeys, the handoff form with the routing advisor, the live event stream,
the screen pop with 签收/退回, the agent's work orders.
"""
