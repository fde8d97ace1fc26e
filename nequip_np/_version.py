"""The package version, in one place (read by the package root and by files that record provenance)."""

__version__ = "0.1.0"
