"""The configuration: its model, its reader, YAML with positions, and the dataclass-parameter builder."""
