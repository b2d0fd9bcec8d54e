"""Carry-number transfer (携号转接): state machine, service and API resource."""
