"""pretix's check-in rule language, evaluated offline: the custom rules of a pretix check-in list.

A pretix check-in list may carry `rules`: JSON-logic (jsonlogic.com) with pretix's own operators
and variables (pretix/base/services/checkin.py, `_get_logic_environment` and `LazyRuleVars`). The
language a list may use is what pretix itself accepts for a list (`CheckinList.validate_rules`):

    first level   <  <=  >  >=  ==  !=  inList  isBefore  isAfter  and  or
    below         buildTime  objectList  lookup  var  entries_since  entries_before
                  entries_days_since  entries_days_before (one `buildTime` argument each)
    variables     product  variation  gate  now  now_isoweekday  entries_number  entries_today
                  entries_days  minutes_since_last_entry  minutes_since_first_entry  entry_status
    buildTime     ["custom", ISO time with offset] ["customtime", "HH:MM[:SS]"] ["date_from"]
                  ["date_to"] ["date_admission"]
    lookup        [model, "pk", label] -> the integer pk; objectList [...] -> the list

`check_rules()` refuses anything else when a list arrives (so a gate never meets an operator it
cannot evaluate at a scan); `evaluate()` gives pretix's verdict and `explain()` the words pretix
gives for a denial (its `_logic_explain`: the "closest" failing path by pretix's weights).

Semantics, as pretix's (the ticket's history is the list's check-ins, entries and exits, each
a unix time): days are the event time zone's calendar days (midnight local time is the day
boundary); entries count every entry on the list whatever its time; minutes since an entry are
floor((now - entry) / 60), and -1 without an entry; `entry_status` is "present" when the latest
movement is an entry, else "absent"; `gate` is the pretix id of the gate the scan happens at
(None if the gate has no pretix counterpart). JSON-logic's comparisons follow pretix's vendored
json-logic (loose equality of strings and numbers, numeric `<` with a failed conversion false).

Pure: time zone objects come in from the caller (the shell reads the system's zone database).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone, tzinfo

from gated.core.errors import GatedError, brief, briefs

TOP_LEVEL = {"<", "<=", ">", ">=", "==", "!=", "inList", "isBefore", "isAfter", "or", "and"}
INNER = {
    "buildTime",
    "objectList",
    "lookup",
    "var",
    "entries_since",
    "entries_before",
    "entries_days_since",
    "entries_days_before",
}
VARIABLES = {
    "product",
    "variation",
    "now",
    "now_isoweekday",
    "entries_number",
    "entries_today",
    "entries_days",
    "minutes_since_last_entry",
    "minutes_since_first_entry",
    "gate",
    "entry_status",
}
CUTOFF_COUNTS = ("entries_since", "entries_before", "entries_days_since", "entries_days_before")
TIME_KINDS = {"custom", "customtime", "date_from", "date_to", "date_admission"}
MAX_DEPTH = 32
MAX_NODES = 5000
MAX_PATHS = 4096  # explain(): at most this many paths in the rules' disjunctive normal form
_CUSTOMTIME = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?$")


class RuleError(GatedError, ValueError):
    """A rule set this gate will not take (refused when the list arrives, never at a scan)."""


# --- the inputs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class EventTimes:
    """What `buildTime` needs of the event: its time zone and its dates (unix seconds)."""

    tz: tzinfo
    date_from: float
    date_to: float | None = None
    date_admission: float | None = None


@dataclass(frozen=True)
class Movement:
    at: float  # unix seconds
    entry: bool  # False: an exit


@dataclass(frozen=True)
class RuleInput:
    """One scan: the ticket's product, the gate, the time, and the ticket's history on the list."""

    product: int
    variation: int | None
    gate: int | None
    now: float
    history: tuple[Movement, ...] = field(default=())

    @property
    def entries(self) -> list[float]:
        return sorted(m.at for m in self.history if m.entry)


# --- checking a rule set when it arrives -------------------------------------------------------


def check_rules(rules) -> None:
    """Raise RuleError naming the first problem; `{}` (or None) means no rules."""
    if rules is None or rules == {}:
        return
    count = [0]
    _check(rules, depth=0, below_comparison=False, path="rules", count=count)


HISTORY_VARIABLES = VARIABLES - {"product", "variation", "now", "now_isoweekday", "gate"}


def reads_history(rules) -> bool:
    """Whether the rules read the ticket's movements (entry counts, minutes since an entry,
    `entry_status`): a gate that cannot see all of them (a replaced gate, not yet synced) cannot
    judge such rules. Rules as check_rules() took them."""
    if isinstance(rules, list):
        return any(reads_history(v) for v in rules)
    if not isinstance(rules, dict) or len(rules) != 1:
        return False
    ((operator, values),) = rules.items()
    if operator in CUTOFF_COUNTS:
        return True
    if operator == "var":
        name = values[0] if isinstance(values, list) and values else values
        return isinstance(name, str) and name in HISTORY_VARIABLES
    return reads_history(values)


def _check(node, *, depth: int, below_comparison: bool, path: str, count: list) -> None:
    count[0] += 1
    if count[0] > MAX_NODES or depth > MAX_DEPTH:
        raise RuleError(f"{path}: rules too large or too deep")
    if not isinstance(node, dict):
        if depth == 0:
            raise RuleError(f"{path}: the rules must be an object")
        if isinstance(node, list):
            for i, item in enumerate(node):
                _check(item, depth=depth + 1, below_comparison=below_comparison, path=f"{path}[{i}]", count=count)
            return
        if node is None or isinstance(node, (bool, str)) or _is_number(node):
            return
        raise RuleError(f"{path}: {type(node).__name__} is not a JSON value")
    if len(node) != 1:
        raise RuleError(f"{path}: an operation has exactly one operator, found {briefs(node)}")
    ((operator, values),) = node.items()
    if operator not in TOP_LEVEL | INNER:
        raise RuleError(f"{path}: unknown operator {brief(operator)}")
    if depth == 0 and operator not in TOP_LEVEL:
        raise RuleError(f"{path}: operator {brief(operator)} is not allowed on the first level")
    if operator in ("and", "or") and below_comparison:
        raise RuleError(f"{path}: and/or below a comparison")
    args = values if isinstance(values, list) else [values]
    where = f"{path}.{operator}"
    if operator == "var":
        if not args or args[0] not in VARIABLES:
            raise RuleError(f"{where}: unknown variable {brief(args[0] if args else None)}")
        return
    if operator == "buildTime":
        _check_build_time(args, where)
        return
    if operator == "lookup":
        if len(args) != 3 or not isinstance(args[1], (str, int)) or isinstance(args[1], bool):
            raise RuleError(f"{where}: lookup takes [model, pk, label]")
        try:
            int(args[1])
        except ValueError:
            raise RuleError(f"{where}: lookup pk {brief(args[1])} is not an integer") from None
        return
    if operator in CUTOFF_COUNTS:
        if len(args) != 1 or not isinstance(args[0], dict) or "buildTime" not in args[0]:
            raise RuleError(f"{where}: takes exactly one buildTime argument")
    if operator in ("isBefore", "isAfter"):
        if len(args) not in (2, 3):
            raise RuleError(f"{where}: takes two times and an optional tolerance in minutes")
        if len(args) == 3 and not _tolerance_ok(args[2]):
            raise RuleError(f"{where}: tolerance {brief(args[2])} is not a number of minutes")
    if operator in ("<", "<=", ">", ">=", "==", "!=", "inList") and len(args) not in (2, 3):
        raise RuleError(f"{where}: takes two operands")
    for i, value in enumerate(args):
        _check(
            value,
            depth=depth + 1,
            below_comparison=below_comparison or operator not in ("and", "or"),
            path=f"{where}[{i}]",
            count=count,
        )


def _check_build_time(args, where: str) -> None:
    if not args or args[0] not in TIME_KINDS:
        raise RuleError(f"{where}: unknown time {brief(args[0] if args else None)}")
    if args[0] == "custom":
        if len(args) < 2 or _parse_custom(args[1]) is None:
            raise RuleError(f"{where}: a custom time needs an ISO 8601 time with its UTC offset")
    elif args[0] == "customtime":
        if len(args) < 2 or not isinstance(args[1], str) or not _CUSTOMTIME.match(args[1]):
            raise RuleError(f"{where}: a custom time of day is HH:MM[:SS]")


def _tolerance_ok(value) -> bool:
    if value is None or value == "" or value is False:
        return True
    if isinstance(value, bool):
        return False
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _parse_custom(value) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


# --- evaluation ------------------------------------------------------------------------------


class _Vars:
    """pretix's LazyRuleVars over a history instead of a database."""

    def __init__(self, scan: RuleInput, event: EventTimes):
        self.scan, self.event = scan, event
        self.now = datetime.fromtimestamp(scan.now, timezone.utc)

    def local(self, unix: float) -> datetime:
        return datetime.fromtimestamp(unix, timezone.utc).astimezone(self.event.tz)

    def get(self, name: str):
        scan, entries = self.scan, self.scan.entries
        if name == "now":
            return self.now
        if name == "now_isoweekday":
            return self.local(scan.now).isoweekday()
        if name == "product":
            return scan.product
        if name == "variation":
            return scan.variation
        if name == "gate":
            return scan.gate
        if name == "entries_number":
            return len(entries)
        if name == "entries_today":
            midnight = self.now.astimezone(self.event.tz).replace(hour=0, minute=0, second=0, microsecond=0)
            return sum(1 for at in entries if at >= midnight.timestamp())
        if name == "entries_days":
            return len({self.local(at).date() for at in entries})
        if name == "minutes_since_last_entry":
            return (scan.now - max(entries)) // 60 if entries else -1
        if name == "minutes_since_first_entry":
            return (scan.now - min(entries)) // 60 if entries else -1
        if name == "entry_status":
            if not scan.history:
                return "absent"
            latest = max(scan.history, key=lambda m: m.at)
            return "present" if latest.entry else "absent"
        raise RuleError(f"unknown variable {name!r}")  # check_rules() keeps this from happening

    def count(self, kind: str, cutoff: datetime) -> int:
        at = cutoff.timestamp()
        entries = self.scan.entries
        chosen = [e for e in entries if e >= at] if kind.endswith("since") else [e for e in entries if e < at]
        if kind.startswith("entries_days"):
            return len({self.local(e).date() for e in chosen})
        return len(chosen)

    def build_time(self, kind, value=None):
        if kind == "custom":
            return _parse_custom(value)
        if kind == "customtime":
            hour, minute, second, micro = _CUSTOMTIME.match(value).groups()
            return self.now.astimezone(self.event.tz).replace(
                hour=int(hour),
                minute=int(minute),
                second=int(second or 0),
                microsecond=int((micro or "0").ljust(6, "0")),
            )
        date = {
            "date_from": self.event.date_from,
            "date_to": self.event.date_to or self.event.date_from,
            "date_admission": self.event.date_admission or self.event.date_from,
        }[kind]
        return datetime.fromtimestamp(date, timezone.utc)


def _apply(node, env: _Vars):
    if not isinstance(node, dict):
        return [_apply(v, env) for v in node] if isinstance(node, list) else node
    ((operator, values),) = node.items()
    args = values if isinstance(values, list) else [values]
    if operator == "var":
        return env.get(args[0])
    if operator == "buildTime":
        return env.build_time(*args)
    args = [_apply(v, env) for v in args]
    if operator == "and":
        result = True
        for a in args:
            result = result and a
        return result
    if operator == "or":
        result = False
        for a in args:
            result = result or a
        return result
    if operator in _COMPARE:
        return _COMPARE[operator](*args)
    if operator == "inList":
        return args[0] in args[1] if isinstance(args[1], list) else False
    if operator == "objectList":
        return list(args)
    if operator == "lookup":
        return int(args[1])
    if operator == "isBefore":
        return _is_before(*args)
    if operator == "isAfter":
        return _is_before(args[1], args[0], *args[2:])
    if operator in CUTOFF_COUNTS:
        return env.count(operator, args[0])
    raise RuleError(f"unknown operator {operator!r}")  # check_rules() keeps this from happening


def _is_before(t1, t2, tolerance=None) -> bool:
    if tolerance:
        return t1 < t2 + timedelta(minutes=float(tolerance))
    return t1 < t2


def _soft_equals(a, b) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return _js_str(a) == _js_str(b)
    if isinstance(a, bool) or isinstance(b, bool):
        return bool(a) is bool(b)
    return a == b


def _js_str(value) -> str:
    return str(value)  # as pretix's vendored json-logic (Python's str, not JavaScript's)


def _less(a, b, *more) -> bool:
    kinds = {type(a), type(b)}
    if float in kinds or int in kinds:
        try:
            a, b = float(a), float(b)
        except (TypeError, ValueError):
            return False
    try:
        return a < b and (not more or _less(b, *more))
    except TypeError:
        return False


def _less_equal(a, b, *more) -> bool:
    return (_less(a, b) or _soft_equals(a, b)) and (not more or _less_equal(b, *more))


_COMPARE = {
    "==": lambda a, b, *_: _soft_equals(a, b),
    "!=": lambda a, b, *_: not _soft_equals(a, b),
    "<": _less,
    "<=": _less_equal,
    ">": lambda a, b, *_: _less(b, a),
    ">=": lambda a, b, *_: _less(b, a) or _soft_equals(a, b),
}


class EvaluationFailed(GatedError, ValueError):
    """A checked rule set that fails on this scan's values (a time compared with a number...):
    pretix denies such a scan, reason `rules`, "Evaluation of custom rules has failed."."""


def evaluate(rules, scan: RuleInput, event: EventTimes) -> bool:
    """pretix's verdict on a checked rule set: True admits. No rules admit. Raises EvaluationFailed."""
    if not rules:
        return True
    try:
        return bool(_apply(rules, _Vars(scan, event)))
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError) as exc:
        raise EvaluationFailed(str(exc)) from None


# --- the explanation of a denial (pretix's _logic_explain) -------------------------------------

_WEIGHT = {
    "minutes_since_first_entry": 80,
    "minutes_since_last_entry": 90,
    "entries_days": 100,
    "entries_days_since": 105,
    "entries_days_before": 105,
    "entries_since": 110,
    "entries_before": 110,
    "entries_number": 120,
    "entries_today": 140,
    "now_isoweekday": 210,
}
_OPERATOR_WEIGHT = {"==": 2, "<": 1, "<=": 1, ">": 1, ">=": 1, "!=": 3}
_LABEL = {
    "minutes_since_last_entry": "time since last entry",
    "minutes_since_first_entry": "time since first entry",
    "entries_days": "number of days with an entry",
    "entries_number": "number of entries",
    "entries_today": "number of entries today",
    "entries_since": "number of entries since {datetime}",
    "entries_before": "number of entries before {datetime}",
    "entries_days_since": "number of days with an entry since {datetime}",
    "entries_days_before": "number of days with an entry before {datetime}",
    "now_isoweekday": "week day",
}
_WEEKDAYS = {1: "Monday", 2: "Tuesday", 3: "Wednesday", 4: "Thursday", 5: "Friday", 6: "Saturday", 7: "Sunday"}


class _Unexplained(GatedError):
    pass


def explain(rules, scan: RuleInput, event: EventTimes) -> str:
    """Why `rules` deny this scan, in pretix's words (English), e.g. "Only allowed after 10:00" or
    "Maximum number of entries today exceeded"; "Unknown reason" where pretix gives that."""
    env = _Vars(scan, event)
    values = {"False": False, "True": True}
    explained: dict[str, tuple] = {}

    def inner(node):
        if node is True:
            return {"var": "True"}
        if node is False:
            return {"var": "False"}
        if not isinstance(node, dict):
            return node
        ((operator, args),) = node.items()
        if operator in ("and", "or"):
            return {operator: [inner(v) for v in (args if isinstance(args, list) else [args])]}
        result = _apply(node, env)
        name = f"v{len(values)}"
        values[name] = result
        if not result:
            args = args if isinstance(args, list) else [args]
            first = args[0] if args else None
            if isinstance(first, dict) and "var" in first:
                var = first["var"][0] if isinstance(first["var"], list) else first["var"]
                explained[name] = (operator, var, args[1:])
            elif isinstance(first, dict) and any(k in first for k in CUTOFF_COUNTS):
                explained[name] = (operator, first, args[1:])
            else:
                raise _Unexplained
        return {"var": name}

    try:
        tree = inner(rules)
    except _Unexplained:
        return "Unknown reason"
    if _paths(tree) > MAX_PATHS:
        return "Unknown reason"  # an AND of ORs multiplies out: a scan must not wait for it
    tree = _dnf(tree)
    if "and" in tree:
        paths = [[v["var"] for v in tree["and"]]]
    elif "or" in tree:
        paths = [[v["var"] for v in r["and"]] if "and" in r else [r["var"]] for r in tree["or"]]
    else:
        paths = [[tree["var"]]]
    weights = {"False": (100000, 0), "True": (100000, 0)}
    texts = {"False": "Always false", "True": "Always true"}
    try:
        for name, (operator, var, rhs) in explained.items():
            weights[name], texts[name] = _weigh(operator, var, rhs, env)
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError):
        return "Unknown reason"  # a comparison pretix's explanation cannot weigh (pretix itself fails on it)
    path_weights = [max([weights[v] for v in path if not values[v]] or [(0, 0)]) for path in paths]
    lightest = min(path_weights)
    chosen = [p for i, p in enumerate(paths) if path_weights[i] == lightest]
    chosen.sort(key=lambda p: len([v for v in p if not values[v]]))
    return ", ".join(texts[v] for v in chosen[0] if not values[v])


def _weigh(operator: str, var, rhs: list, env: _Vars) -> tuple[tuple, str]:
    if var == "now":
        compare_to = _apply(rhs[0], env).astimezone(env.event.tz)
        tolerance = timedelta(minutes=float(rhs[1])) if len(rhs) > 1 and rhs[1] else timedelta(0)
        compare_to = compare_to + tolerance if operator == "isBefore" else compare_to - tolerance
        distance = abs(env.now - compare_to)
        text = _format_time(compare_to, distance)
        words = {"isBefore": f"Only allowed before {text}", "isAfter": f"Only allowed after {text}"}
        return (200, distance.total_seconds()), words.get(operator, "")
    if var == "entry_status":
        if operator == "==" and rhs[0] == "present":
            return (20, 0), "Attendee is checked out"
        if operator == "==" and rhs[0] == "absent":
            return (20, 0), "Attendee is already checked in"
        return (20, 0), f"{var} not {operator} {rhs}"
    if var in ("product", "variation"):
        return (1000, 0), "Ticket type not allowed"
    if var == "gate":
        return (500, 0), "Wrong entrance gate"
    label = dict(_LABEL)
    if isinstance(var, dict):
        kind = next(iter(var))
        cutoff = _apply(var[kind][0], env).astimezone(env.event.tz)
        label[kind] = label[kind].format(datetime=_format_time(cutoff, abs(env.now - cutoff)))
        result = env.count(kind, cutoff)
        var = kind
    else:
        result = env.get(var)
    compare_to = rhs[0]
    penalty = 0
    if var in ("minutes_since_last_entry", "minutes_since_first_entry"):
        if (
            (operator == "<" and compare_to <= 0)
            or (operator == "<=" and compare_to < 0)
            or (operator == ">=" and compare_to < 0)
            or (operator == ">" and compare_to <= 0)
            or (operator in ("==", "!=") and compare_to == -1)
        ):
            penalty = 1000
    weight = (_WEIGHT[var] + _OPERATOR_WEIGHT.get(operator, 0) + penalty, abs(compare_to - result))
    if var == "now_isoweekday":
        compare_to = _WEEKDAYS.get(compare_to, compare_to)
    text = {
        "==": f"{label[var]} is not {compare_to}",
        "<": f"Maximum {label[var]} exceeded",
        "<=": f"Maximum {label[var]} exceeded",
        ">": f"Minimum {label[var]} exceeded",
        ">=": f"Minimum {label[var]} exceeded",
        "!=": f"{label[var]} is {compare_to}",
    }.get(operator, "")
    return weight, text


def _format_time(moment: datetime, distance: timedelta) -> str:
    """pretix's English formats: TIME_FORMAT 'H:i' within 12 hours, else SHORT_DATETIME_FORMAT 'Y-m-d H:i'."""
    return moment.strftime("%H:%M") if distance < timedelta(hours=12) else moment.strftime("%Y-%m-%d %H:%M")


def _paths(node) -> int:
    """How many paths to truth the disjunctive normal form of `node` has (OR adds, AND multiplies)."""
    if not isinstance(node, dict):
        return 1
    ((operator, values),) = node.items()
    if operator == "or":
        return sum(_paths(v) for v in values)
    if operator == "and":
        count = 1
        for v in values:
            count *= _paths(v)
            if count > MAX_PATHS:
                return count
        return count
    return 1


def _dnf(rules):
    """pretix's convert_to_dnf: (a AND b) OR (c AND d), no deeper nesting."""
    if not isinstance(rules, dict):
        return rules

    def distribute(r):
        ((operator, values),) = r.items()
        if operator == "and":
            ors = [a for a in values if isinstance(a, dict) and "or" in a]
            if not ors:
                return rules
            first = ors[0]
            others = [a for a in values if a is not first]
            return {"or": [{"and": [*others, d]} for d in first["or"]]}
        return r

    def flatten(r):
        if not isinstance(r, dict):
            return r
        ((operator, values),) = r.items()
        if operator not in ("or", "and"):
            return r
        flat = []
        for v in values:
            flat += v[operator] if isinstance(v, dict) and operator in v else [v]
        return {operator: flat}

    old = rules
    while True:
        rules = distribute(rules)
        ((operator, values),) = rules.items()
        single = not isinstance(values, list)
        values = [values] if single else values
        rules = {operator: _dnf(values[0]) if single else [_dnf(v) for v in values]}
        if old == rules:
            break
        old = rules
    return flatten(rules)
