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


def undecodable(exc: UnicodeDecodeError) -> str:
    """What a file that is not UTF-8 text is, for an error message that names the file."""
    return f"not UTF-8 text ({exc.reason} at byte {exc.start})"


def brief(value, limit: int = 60) -> str:
    """A short description of a value from outside, for an error message: the repr of a small int,
    float, None or bool, of a str or bytes cut to `limit`, else the type alone. Never raises (the
    repr of a 5000-digit int does: Python's int-to-str limit) and never grows with the input."""
    if value is None or isinstance(value, (bool, float)):
        return repr(value)
    if isinstance(value, int):
        return repr(int(value)) if value.bit_length() <= 64 else f"an integer of {value.bit_length()} bits"
    if isinstance(value, (str, bytes)):
        unit = "characters" if isinstance(value, str) else "bytes"
        return repr(value) if len(value) <= limit else f"{value[:limit]!r}... ({len(value)} {unit})"
    return f"a {type(value).__name__}"


def briefs(values, count: int = 5) -> str:
    """brief() of the first `count` of `values` (sorted where they sort), and how many more."""
    values = list(values)
    try:
        values.sort()
    except (TypeError, ValueError):
        pass  # keys of mixed types: in the order given
    shown = ", ".join(brief(v) for v in values[:count])
    return f"[{shown}{f' and {len(values) - count} more' if len(values) > count else ''}]"
