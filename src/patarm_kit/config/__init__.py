"""Room 1, config: what a run is asked to do, as data.

schema (the typed sections), rules (allowed values), build (sections from mappings, checked),
loader (YAML profiles with `extends:` and dotted overrides).
"""

__all__ = ["build", "loader", "rules", "schema"]
