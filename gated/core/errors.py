"""The package's base error. Every error gated raises on purpose inherits it, beside the built-in it
matches (as gpiozero does: `class PinInvalidPull(PinError, ValueError)`), so a caller can catch
"anything gated refused or could not do" in one clause and still catch ValueError or RuntimeError."""


class GatedError(Exception):
    """A fault or refusal that gated raised knowingly; its message says what to do about it."""
