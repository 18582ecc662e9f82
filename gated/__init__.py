"""gated: offline ticket validation for gates and turnstiles."""

from gated.core.errors import GatedError

__all__ = ["GatedError", "__version__"]
__version__ = "0.1.0"
