"""The bridge's settings: one TOML file plus ``HOTLINE_BRIDGE_*`` environment overrides."""
