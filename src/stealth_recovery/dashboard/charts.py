"""Charts rendered on the server as SVG: readable without JavaScript, crisp at any size."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from markupsafe import Markup, escape

# Colours of the dashboard's palette (also in dashboard.css), one per meaning.
STATUS_COLOURS: dict[str, str] = {
    "completed": "#16a34a",
    "opened": "#0ea5e9",
    "sent": "#6366f1",
    "created": "#a5b4fc",
    "expired": "#f59e0b",
    "cancelled": "#94a3b8",
    "delivered": "#16a34a",
    "pending": "#cbd5e1",
    "failed": "#dc2626",
    "bounced": "#f97316",
    "unconfirmed": "#a855f7",
    "handing_over": "#94a3b8",
}

WIDTH = 720
# The drawing shown instead on a phone: a card there is about 330 CSS px wide, so its text is
# drawn at about its nominal size and the chart fits the card without scrolling.
PHONE_WIDTH = 340
HEIGHT = 240
_LEFT = 44
_RIGHT = 12
_TOP = 12
_BOTTOM = 30


@dataclass(frozen=True)
class Series:
    name: str
    colour: str
    values: Sequence[int]

    @property
    def total(self) -> int:
        return sum(self.values)


@dataclass(frozen=True)
class Chart:
    """An SVG and the legend shown next to it; `phone_svg`, when set, is drawn on phones."""

    svg: Markup
    legend: list[Series]
    total: int
    phone_svg: Markup | None = None


def nice_ticks(maximum: int, *, target: int = 4) -> list[int]:
    """Round axis ticks from 0 to at least `maximum` (1, 2 or 5 times a power of ten apart)."""
    if maximum <= 0:
        return [0, 1]
    raw = maximum / target
    power = 10 ** math.floor(math.log10(raw)) if raw >= 1 else 1
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    step = max(1, int(step))
    top = step * math.ceil(maximum / step)
    return list(range(0, top + 1, step))


def _fmt(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _axes(ticks: list[int], scale: float, plot_bottom: float, width: int) -> list[str]:
    parts: list[str] = []
    for tick in ticks:
        y = plot_bottom - tick * scale
        parts.append(
            f'<line x1="{_LEFT}" x2="{width - _RIGHT}" y1="{_fmt(y)}" y2="{_fmt(y)}" '
            f'class="grid"/>'
            f'<text x="{_LEFT - 6}" y="{_fmt(y + 4)}" class="tick" text-anchor="end">{tick}</text>'
        )
    return parts


def _empty(label: str, width: int) -> Markup:
    return Markup(
        f'<svg viewBox="0 0 {width} {HEIGHT}" class="chart" role="img" '
        f'aria-label="{escape(label)}: no data yet">'
        f'<text x="{width / 2}" y="{HEIGHT / 2}" text-anchor="middle" class="empty">'
        "No data yet</text></svg>"
    )


def stacked_bars(
    *,
    label: str,
    categories: Sequence[str],
    series: Sequence[Series],
    tooltip_prefix: str = "",
    width: int = WIDTH,
) -> Chart:
    """Vertical bars, one per category, stacked by series (bottom to top in series order)."""
    total = sum(s.total for s in series)
    if total == 0 or not categories:
        return Chart(svg=_empty(label, width), legend=list(series), total=0)
    stack_tops = [sum(s.values[i] for s in series) for i in range(len(categories))]
    ticks = nice_ticks(max(stack_tops))
    plot_bottom = HEIGHT - _BOTTOM
    scale = (plot_bottom - _TOP) / ticks[-1]
    slot = (width - _LEFT - _RIGHT) / len(categories)
    bar = max(2.0, slot * 0.72)
    parts = _axes(ticks, scale, plot_bottom, width)
    label_every = max(1, math.ceil(len(categories) / max(4, width // 72)))
    for i, category in enumerate(categories):
        x = _LEFT + i * slot + (slot - bar) / 2
        y = float(plot_bottom)
        for s in series:
            value = s.values[i]
            if value <= 0:
                continue
            h = value * scale
            y -= h
            tip = escape(f"{tooltip_prefix}{category} · {s.name}: {value}")
            parts.append(
                f'<rect x="{_fmt(x)}" y="{_fmt(y)}" width="{_fmt(bar)}" height="{_fmt(h)}" '
                f'fill="{s.colour}" rx="1.5"><title>{tip}</title></rect>'
            )
        if i % label_every == 0:
            parts.append(
                f'<text x="{_fmt(x + bar / 2)}" y="{HEIGHT - 10}" class="tick" '
                f'text-anchor="middle">{escape(category)}</text>'
            )
    parts.append(
        f'<line x1="{_LEFT}" x2="{width - _RIGHT}" y1="{plot_bottom}" y2="{plot_bottom}" '
        'class="axis"/>'
    )
    summary = ", ".join(f"{s.name} {s.total}" for s in series if s.total)
    svg = Markup(
        f'<svg viewBox="0 0 {width} {HEIGHT}" class="chart" role="img" '
        f'aria-label="{escape(label)}: {escape(summary)}">{"".join(parts)}</svg>'
    )
    return Chart(svg=svg, legend=[s for s in series if s.total], total=total)


def day_labels(days: Sequence[date]) -> list[str]:
    return [f"{d.strftime('%b')} {d.day}" for d in days]


def bars(
    *, label: str, categories: Sequence[str], values: Sequence[int], colour: str, width: int = WIDTH
) -> Chart:
    """One bar per category, labelled with its value."""
    series = Series(name=label, colour=colour, values=values)
    total = sum(values)
    if total == 0:
        return Chart(svg=_empty(label, width), legend=[series], total=0)
    ticks = nice_ticks(max(values))
    plot_bottom = HEIGHT - _BOTTOM
    scale = (plot_bottom - _TOP - 14) / ticks[-1]
    slot = (width - _LEFT - _RIGHT) / len(categories)
    bar = min(88.0, slot * 0.6)
    parts = _axes(ticks, scale, plot_bottom, width)
    for i, (category, value) in enumerate(zip(categories, values, strict=True)):
        x = _LEFT + i * slot + (slot - bar) / 2
        h = value * scale
        y = plot_bottom - h
        share = f" ({value * 100 / total:.0f}%)" if total else ""
        tip = escape(f"{category}: {value}{share}")
        parts.append(
            f'<rect x="{_fmt(x)}" y="{_fmt(y)}" width="{_fmt(bar)}" height="{_fmt(h)}" '
            f'fill="{colour}" rx="3"><title>{tip}</title></rect>'
            f'<text x="{_fmt(x + bar / 2)}" y="{_fmt(y - 5)}" class="value" '
            f'text-anchor="middle">{value}</text>'
            f'<text x="{_fmt(x + bar / 2)}" y="{HEIGHT - 10}" class="tick" '
            f'text-anchor="middle">{escape(category)}</text>'
        )
    parts.append(
        f'<line x1="{_LEFT}" x2="{width - _RIGHT}" y1="{plot_bottom}" y2="{plot_bottom}" '
        'class="axis"/>'
    )
    summary = ", ".join(f"{c} {v}" for c, v in zip(categories, values, strict=True))
    svg = Markup(
        f'<svg viewBox="0 0 {width} {HEIGHT}" class="chart" role="img" '
        f'aria-label="{escape(label)}: {escape(summary)}">{"".join(parts)}</svg>'
    )
    return Chart(svg=svg, legend=[series], total=total)
