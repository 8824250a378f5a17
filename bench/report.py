"""What the benchmarks do with their figures: progress lines, the results JSON, the README block.

Each benchmark owns a block of bench/README.md between two HTML comments (its markers) and
rewrites only that block, so the prose around the tables stays as written.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer

README = Path(__file__).resolve().parent / "README.md"


def log(message: str) -> None:
    """A progress line on stderr, with the UTC time."""
    typer.echo(f"[{datetime.now(UTC):%H:%M:%S}] {message}", err=True)


def replace_block(start: str, end: str, block: str, *, readme: Path = README) -> None:
    """Put `block` between the `start` and `end` markers of `readme`, in place of what was there."""
    text = readme.read_text()
    first, last = text.index(start), text.index(end)
    readme.write_text(text[: first + len(start)] + "\n" + block + "\n" + text[last:])


def publish(
    data: dict[str, Any], *, path: Path, block: str, markers: tuple[str, str] | None
) -> None:
    """Write `data` to `path` (JSON), `block` into the README between `markers` (None: leave
    the README alone), and both where the person running the benchmark sees them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    if markers is not None:
        replace_block(*markers, block)
    typer.echo(block)
    typer.echo(f"\nresults: {path} ({data['total_s']} s)")
