"""The plots of the reports, one code for both: `gated report` (the day at a site, from the
ledger) and the rehearsal's report (sim/report.py). matplotlib is the `sim` extra (a gate does not
need it): require() says how to get it. Each plot is returned as a base64 PNG for embedding in a
self-contained page.

    counts_per_bin   people per time bin, one line per series (gates, zones)
    occupancy        people inside over time, one step line per zone, its capacity dashed
    bars             counts per label (denials per reason, ticket types), optionally beside expected counts
"""

from __future__ import annotations

import base64
import io

from gated.core.errors import GatedError

COLOURS = {
    "broker_down": "#d62728",
    "gate_kill": "#9467bd",
    "camera_stall": "#ff7f0e",
    "outage": "#d62728",
    "held_back": "#ff7f0e",
}


class PlotsUnavailable(GatedError, RuntimeError):
    """matplotlib is not installed."""


def require() -> None:
    """Raise PlotsUnavailable with what to install when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise PlotsUnavailable(
            f"the report's plots need {exc.name or 'matplotlib'}, which a gate does not: pip install 'gated[sim]'"
        ) from None


def pyplot():
    require()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png(fig) -> str:
    plt = pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def shade(ax, spans: list[tuple[float, float, str]]) -> None:
    """Shade (start, end, label) spans on the x axis (faults, outages), one legend entry per label."""
    seen = set()
    for start, end, label in spans:
        kind = label.split(" ")[0]
        ax.axvspan(start, end, color=COLOURS.get(kind, "#888888"), alpha=0.15, label=None if label in seen else label)
        seen.add(label)


def counts_per_bin(
    series: dict[str, dict[int, int]],
    bins: list,
    *,
    xs: list,
    title: str,
    ylabel: str,
    xlabel: str,
    scale: float = 1.0,
    spans=(),
    summarise_over: int = 8,
) -> str:
    """`series`: label -> {bin index: count}; `xs`: the x value of each bin index in `bins`.
    More than `summarise_over` series: the mean and the busiest instead of one line each."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 3.4))
    if len(series) > summarise_over:
        n = len(series)
        ax.plot(xs, [sum(s.get(b, 0) for s in series.values()) * scale / n for b in bins], label=f"mean of {n}")
        ax.plot(xs, [max(s.get(b, 0) for s in series.values()) * scale for b in bins], linestyle="--", label="busiest")
    else:
        for label, counts in series.items():
            ax.plot(xs, [counts.get(b, 0) * scale for b in bins], marker=".", label=label)
    shade(ax, list(spans))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if series:
        ax.legend(fontsize=8, ncol=4)
    fig.autofmt_xdate() if xs and not isinstance(xs[0], (int, float)) else None
    return png(fig)


def occupancy(
    points: dict[str, list[tuple]], capacities: dict[str, int | None], *, title: str, xlabel: str, spans=()
) -> str:
    """`points`: zone -> [(x, people inside after this change)], in time order."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 3.4))
    for zone, pts in points.items():
        if not pts:
            continue
        (line,) = ax.step([p[0] for p in pts], [p[1] for p in pts], where="post", label=zone or "(no zone)")
        if capacities.get(zone) is not None:
            ax.axhline(
                capacities[zone],
                color=line.get_color(),
                linestyle="--",
                linewidth=1,
                label=f"{zone or '(no zone)'} capacity {capacities[zone]}",
            )
    shade(ax, list(spans))
    ax.set_xlabel(xlabel)
    ax.set_ylabel("people inside")
    ax.set_title(title)
    if points:
        ax.legend(fontsize=8, ncol=3)
    first = next((pts[0][0] for pts in points.values() if pts), None)
    if first is not None and not isinstance(first, (int, float)):
        fig.autofmt_xdate()
    return png(fig)


def bars(
    counts: dict[str, int],
    *,
    title: str,
    ylabel: str,
    expected: dict[str, int] | None = None,
    colour: str = "#d62728",
    label: str = "counted",
) -> str:
    """Counts per label; with `expected`, grey bars of the expected counts beside them."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 3.0))
    names = sorted(set(counts) | set(expected or {}))
    xs = range(len(names))
    if expected is not None:
        ax.bar([x - 0.2 for x in xs], [expected.get(r, 0) for r in names], width=0.4, label="expected", color="#bbbbbb")
        ax.bar([x + 0.2 for x in xs], [counts.get(r, 0) for r in names], width=0.4, label=label, color=colour)
        ax.legend(fontsize=8)
    else:
        ax.bar(list(xs), [counts.get(r, 0) for r in names], width=0.6, color=colour)
    ax.set_xticks(list(xs), names, rotation=20, fontsize=8)
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts: 0, 1, 2, never 0.25
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return png(fig)


# --- the day's report: bars per bin on the venue's clock, one colour per name throughout ----------

PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#bcbd22",
    "#7f7f7f",
    "#aec7e8",
    "#ffbb78",
    "#98df8a",
)


def colours_for(names) -> dict[str, str]:
    """One colour per name (a zone, a gate), by sorted name: the same in every plot of a report."""
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(sorted(set(names)))}


def time_axis(ax, window: tuple, tz) -> None:
    """The x axis is the window (the venue's day), labelled in its local wall time HH:MM, whatever
    the data: one event is a bar in its day, not a dot on an axis of years."""
    import matplotlib.dates as mdates

    start, end = window
    ax.set_xlim(start, end)
    locator = mdates.AutoDateLocator(tz=tz, minticks=4, maxticks=10)
    ax.xaxis.set_major_locator(locator)
    short = (end - start).total_seconds() < 20 * 60  # ticks under a minute apart: they need their seconds
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S" if short else "%H:%M", tz=tz))


def _integer_y(ax, top: float) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.set_ylim(0, max(1, top) * 1.1)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))


def binned_bars(
    series: dict[str, dict],
    *,
    lefts: dict,
    width_days: float,
    window: tuple,
    tz,
    title: str,
    ylabel: str,
    xlabel: str,
    colours: dict[str, str],
) -> str:
    """Counts per time bin as bars stacked by series. `series`: name -> {bin: count}; `lefts`: bin ->
    datetime of the bin's start; `width_days`: a bin's width (matplotlib's date unit is the day)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 3.4))
    bottom: dict = {}
    for name in sorted(series):
        counts = series[name]
        bins = sorted(counts)
        ax.bar(
            [lefts[b] for b in bins],
            [counts[b] for b in bins],
            width=width_days * 0.9,
            align="edge",
            bottom=[bottom.get(b, 0) for b in bins],
            color=colours.get(name, "#888888"),
            label=name,
        )
        for b in bins:
            bottom[b] = bottom.get(b, 0) + counts[b]
    time_axis(ax, window, tz)
    _integer_y(ax, max(bottom.values(), default=0))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if series:
        ax.legend(fontsize=8, ncol=4)
    else:
        ax.text(0.5, 0.5, "no entries", transform=ax.transAxes, ha="center", va="center", color="#57606a")
    return png(fig)


def occupancy_day(
    points: dict[str, list[tuple]],
    capacities: dict[str, int | None],
    *,
    window: tuple,
    tz,
    title: str,
    xlabel: str,
    colours: dict[str, str],
) -> str:
    """People inside per zone over the window, a step line each in the zone's colour, its capacity dashed."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 3.4))
    top = 0
    for zone in sorted(points):
        pts = points[zone]
        if not pts:
            continue
        xs, ys = [p[0] for p in pts] + [window[1]], [p[1] for p in pts] + [pts[-1][1]]
        ax.step(xs, ys, where="post", color=colours.get(zone, "#888888"), label=zone or "(no zone)")
        top = max(top, *ys)
        if capacities.get(zone) is not None:
            ax.axhline(
                capacities[zone],
                color=colours.get(zone, "#888888"),
                linestyle="--",
                linewidth=1,
                label=f"{zone or '(no zone)'} capacity {capacities[zone]}",
            )
            top = max(top, capacities[zone])
    time_axis(ax, window, tz)
    _integer_y(ax, top)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("people inside")
    ax.set_title(title)
    if any(points.values()):
        ax.legend(fontsize=8, ncol=3)
    return png(fig)


# --- the page around the plots: one look for the rehearsal report and the day's report --------------

_STYLE = """body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: {width}em; color: #1f2328; }}
.verdict {{ border-left: 0.5em solid {colour}; padding: 0.6em 1em; background: #f6f8fa; font-size: 1.15em; }}
table {{ border-collapse: collapse; margin: 1em 0; }} th, td {{ text-align: left; padding: 0.2em 0.8em;
border-bottom: 1px solid #d0d7de; font-size: 0.92em; }} figure {{ margin: 1em 0; }} img {{ max-width: 100%; }}
.scroll {{ overflow-x: auto; max-width: 100%; }} body {{ padding: 0 0.8em; }}
@media (max-width: 40em) {{ body {{ margin: 0.8em auto; }} th, td {{ padding: 0.2em 0.4em; font-size: 0.85em; }} }}"""


def page_head(title: str, colour: str, width_em: int = 64) -> str:
    """A self-contained HTML page up to <body> (the caller escapes `title`)."""
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<style>\n{_STYLE.format(width=width_em, colour=colour)}\n</style></head><body>\n"
    )


def figures(images: dict[str, str], escape) -> str:
    """The plots as embedded PNG figures."""
    return "".join(
        f'<figure><img alt="{escape(k)}" src="data:image/png;base64,{v}"></figure>' for k, v in images.items()
    )
