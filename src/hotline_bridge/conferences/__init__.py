"""Three-way calls (三方通话): state machine, service and API resource."""
