"""
The geometry of the report pages' charts, as plain data the templates draw.

One chart per meaning: the customer effort score (1 to 5, lower is better) never shares an axis with a
rate (0 to 100 %, higher is better). Daily charts are horizontal bars, one row per agent plus the team,
so that they fit a phone's width; the trend charts are SVG lines, one per agent, scaled by their viewBox.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from callcov_provider.reporting.tables import clip, fmt_ces, fmt_pct
from callcov_provider.reporting.tally import AgentScorecard, number_or_none

#: Series colours of the line charts (colour-blind friendly).
PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7")


@dataclass(frozen=True)
class Metric:
    """
    One quantity a chart shows, with its scale.

    :param key: The scorecard attribute / trend key.
    :param title: The chart's title.
    :param low: The bottom of the scale.
    :param high: The top of the scale.
    :param lower_is_better: Whether a lower value is the better one.
    :param fmt: Formats a value for display.
    :param ticks: The values that get a grid line on the trend chart.
    :param tick_fmt: Formats a tick.
    :param good: The bound of a good value (at most it when lower is better, at least it otherwise).
    :param fair: The bound of a fair value; beyond it a value is poor.
    """

    key: str
    title: str
    low: float
    high: float
    lower_is_better: bool
    fmt: Callable[[float | None], str]
    ticks: tuple[float, ...]
    tick_fmt: Callable[[float], str]
    good: float
    fair: float

    def share(self, value: float) -> float:
        """Where ``value`` sits on the scale, from 0 to 1 (clamped)."""
        return min(max((value - self.low) / (self.high - self.low), 0.0), 1.0)

    def band(self, value: float) -> str:
        """``good``, ``fair`` or ``poor``: the bar's colour class."""
        sign = -1 if self.lower_is_better else 1
        return (
            "good"
            if sign * value >= sign * self.good
            else "fair"
            if sign * value >= sign * self.fair
            else "poor"
        )


CUSTOMER_EFFORT = Metric(
    key="avg_customer_effort_score",
    title="Average customer effort score (1 effortless to 5 hard; lower is better)",
    low=1.0,
    high=5.0,
    lower_is_better=True,
    fmt=fmt_ces,
    ticks=(1, 2, 3, 4, 5),
    tick_fmt=lambda tick: f"{tick:g}",
    good=2.0,
    fair=3.0,
)


def share_metric(key: str, title: str) -> Metric:
    """A share of calls (0 to 100%, higher is better): good from 90%, fair from 70%."""
    return Metric(
        key=key,
        title=title,
        low=0.0,
        high=1.0,
        lower_is_better=False,
        fmt=fmt_pct,
        ticks=(0, 0.25, 0.5, 0.75, 1),
        tick_fmt=lambda tick: f"{tick * 100:.0f}%",
        good=0.9,
        fair=0.7,
    )


COMPLIANCE = share_metric("compliance_rate", "Compliance rate (share of compliant calls; higher is better)")
GREETING = share_metric("greeting_rate", "Greeting rate (share of calls with a greeting; higher is better)")
#: The colour key of the bars, as the daily page states it.
BAND_LEGEND = (
    "Bar colours: green good (effort 2 or less, rates 90 % or more), amber fair (effort up to 3, rates "
    "70 % or more), red poor."
)
#: The daily page's charts, in order.
DAILY_METRICS = (CUSTOMER_EFFORT, COMPLIANCE, GREETING)
#: The trend page's charts, in order.
TREND_METRICS = (CUSTOMER_EFFORT, COMPLIANCE)


def bar_chart(metric: Metric, scorecards: Sequence[AgentScorecard], totals: AgentScorecard) -> dict[str, Any]:
    """
    One horizontal bar per agent, and one for the team.

    :param metric: What the bars show.
    :param scorecards: The agents' scorecards.
    :param totals: The team's scorecard (the last bar).
    :return: ``title`` and ``rows``: ``label``, ``value`` (formatted), ``width`` (percent of the track,
        ``None`` when unknown), ``band`` and ``total`` (whether it is the team's row).
    """
    rows = []
    for card, is_total in [*((card, False) for card in scorecards), (totals, True)]:
        value = getattr(card, metric.key)
        rows.append(
            {
                "label": "Team" if is_total else card.agent_id,
                "value": metric.fmt(value),
                # A sliver even at the scale's bottom, so that a value reads as a bar, not a gap.
                "width": None if value is None else max(metric.share(value) * 100, 1.5),
                "band": "" if value is None else metric.band(value),
                "total": is_total,
            }
        )
    return {"title": metric.title, "rows": rows}


def line_chart(metric: Metric, trend: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """
    One line per agent over the days of ``trend``; a day without a value breaks the agent's line.

    :param metric: What the lines show.
    :param trend: The entries of ``build_weekly_trend``.
    :return: The SVG's ``width``, ``height``, ``title``, ``grid`` (``y``, ``label``), ``days`` (``x``,
        ``label``), ``series`` (``agent``, ``colour``, ``lines``: point strings, ``dots``: ``x``, ``y``,
        ``title``), ``legend_y`` and ``empty``.
    """
    days = sorted({str(entry.get("day", "")) for entry in trend})
    agents = sorted({str(entry.get("agent_id", "")) for entry in trend})
    values: dict[tuple[str, str], float] = {}
    for entry in trend:
        value = number_or_none(entry.get(metric.key))
        if value is not None:
            values[(str(entry.get("agent_id", "")), str(entry.get("day", "")))] = value
    left, right, top, plot_h = 48, 24, 16, 220
    # Narrow enough that its 12-pixel text stays legible when a phone scales the chart to its width.
    plot_w = max(48 * max(len(days) - 1, 1), 320)
    y0 = top + plot_h

    def x_of(index: int) -> float:
        return left + (plot_w / 2 if len(days) == 1 else plot_w * index / (len(days) - 1))

    def y_of(value: float) -> float:
        return y0 - plot_h * metric.share(value)

    series = []
    for number, agent in enumerate(agents):
        lines: list[list[str]] = [[]]
        dots = []
        for index, day in enumerate(days):
            value = values.get((agent, day))
            if value is None:
                lines.append([])
                continue
            x, y = x_of(index), y_of(value)
            lines[-1].append(f"{x:.1f},{y:.1f}")
            dots.append({"x": f"{x:.1f}", "y": f"{y:.1f}", "title": f"{agent} {day}: {metric.fmt(value)}"})
        series.append(
            {
                "agent": clip(agent, 22),
                "colour": PALETTE[number % len(PALETTE)],
                "lines": [" ".join(points) for points in lines if len(points) > 1],
                "dots": dots,
            }
        )
    return {
        "title": metric.title,
        "width": left + plot_w + right,
        "height": y0 + 44 + 18 * ((len(agents) + 1) // 2),
        "left": left,
        "right_x": left + plot_w,
        "top": top,
        "y0": y0,
        "mid_x": left + plot_w / 2,
        "mid_y": top + plot_h / 2,
        "grid": [{"y": f"{y_of(t):.1f}", "label": metric.tick_fmt(t)} for t in metric.ticks],
        "days": [{"x": f"{x_of(i):.1f}", "label": day[5:]} for i, day in enumerate(days)],
        "series": series,
        "legend_y": y0 + 40,
        "legend_step": (plot_w + right) / 2,
        "empty": not values,
    }
