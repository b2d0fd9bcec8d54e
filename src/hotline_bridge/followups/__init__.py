"""Follow-up (回访) after a matter is closed: the task list and the automated rating call."""
