"""Live event streams for agents' consoles and the supervisors' wallboard (Server-Sent Events)."""
