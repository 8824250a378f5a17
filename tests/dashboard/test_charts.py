"""Server-side SVG charts."""

from __future__ import annotations

from datetime import date

from stealth_recovery.dashboard.charts import Series, bars, day_labels, nice_ticks, stacked_bars


class TestNiceTicks:
    def test_round_steps_reach_the_maximum(self) -> None:
        assert nice_ticks(17) == [0, 5, 10, 15, 20]
        assert nice_ticks(3) == [0, 1, 2, 3]
        assert nice_ticks(950) == [0, 500, 1000]

    def test_an_empty_axis_still_has_a_scale(self) -> None:
        assert nice_ticks(0) == [0, 1]


class TestStackedBars:
    def test_one_rect_per_nonzero_value_with_a_tooltip(self) -> None:
        chart = stacked_bars(
            label="Attempts",
            categories=["Nov 1", "Nov 2"],
            series=[Series("Paid", "#0f0", [2, 0]), Series("Open", "#00f", [1, 3])],
        )
        svg = str(chart.svg)
        assert svg.count("<rect") == 3
        assert "<title>Nov 1 · Paid: 2</title>" in svg
        assert 'aria-label="Attempts: Paid 2, Open 4"' in svg
        assert chart.total == 6
        assert [s.name for s in chart.legend] == ["Paid", "Open"]

    def test_labels_are_escaped(self) -> None:
        chart = stacked_bars(
            label="<script>", categories=["<b>"], series=[Series("<i>", "#000", [1])]
        )
        assert "<script>" not in str(chart.svg)
        assert "&lt;b&gt;" in str(chart.svg)

    def test_no_data_says_so(self) -> None:
        chart = stacked_bars(
            label="Attempts", categories=["Nov 1"], series=[Series("x", "#000", [0])]
        )
        assert "No data yet" in str(chart.svg)
        assert chart.total == 0


class TestBars:
    def test_each_bar_shows_its_value_and_share(self) -> None:
        chart = bars(label="By step", categories=["A", "B"], values=[3, 1], colour="#0a0")
        svg = str(chart.svg)
        assert "<title>A: 3 (75%)</title>" in svg
        assert ">3</text>" in svg and ">1</text>" in svg


def test_day_labels_are_short_month_and_day() -> None:
    assert day_labels([date(2026, 11, 3), date(2026, 12, 25)]) == ["Nov 3", "Dec 25"]
