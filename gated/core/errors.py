"""The package's base error. Every error gated raises on purpose inherits it, beside the built-in it
matches (as gpiozero does: `class PinInvalidPull(PinError, ValueError)`), so a caller can catch
"anything gated refused or could not do" in one clause and still catch ValueError or RuntimeError."""


class GatedError(Exception):
    """A fault or refusal that gated raised knowingly; its message says what to do about it."""


class Rejected(GatedError, ValueError):
    """A message from outside that the gate or the central side will not take: `code` is a stable
    word for logs and tests (each subclass lists its own), `detail` says why in words."""

    def __init__(self, code: str, detail: str):
        super().__init__(f"{code}: {detail}")
        self.code, self.detail = code, detail
