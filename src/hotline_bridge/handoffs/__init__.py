"""Handoff records (工单): the model, its durable store and its API resource."""
