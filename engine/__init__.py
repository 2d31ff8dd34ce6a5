"""mailgate: turns email into service-desk work."""

__version__ = "0.1.0"
