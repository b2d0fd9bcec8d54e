"""The running service: composition (``app``), the CLI, the AMI command interpreter, the
switchboard that routes PBX feedback to capabilities, logging and metrics."""
