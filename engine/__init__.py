"""mailgate: turns email into service-desk work."""

# the one place the version is written: pyproject.toml takes it from here (tool.hatch.version),
# and `mailgate --version` prints it; each release moves CHANGELOG.md's Unreleased section under it
__version__ = "0.1.0"
