"""Phone keys: the hotkeys dialled as DTMF on the agent's own phone (any SIP phone).

Asterisk recognises the digits (features.conf ``[applicationmap]`` on a two-party call, the
agent's ConfBridge menu in a three-way room) and runs ``[hotline-keys]`` on the agent's channel
only; that asks the bridge over FastAGI (route ``key``), which acts through the same services and
checks as the HTTP hotkeys and answers accepted or refused. A refused key beeps in the agent's
ear; the citizen hears nothing and nobody is dropped.
"""
