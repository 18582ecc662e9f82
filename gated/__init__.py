"""gated: offline ticket validation for gates and turnstiles."""

__version__ = "0.1.0"
