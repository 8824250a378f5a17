"""What the machine is, and where its CPU went during a measurement (read from /proc)."""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, text

_TICKS = os.sysconf("SC_CLK_TCK")


def describe(engine: Engine) -> dict[str, object]:
    cpu_model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    memory_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    with engine.connect() as connection:
        postgres = connection.execute(text("SHOW server_version")).scalar_one()
        settings = {
            name: connection.execute(text(f"SHOW {name}")).scalar_one()
            for name in ("shared_buffers", "synchronous_commit", "max_connections")
        }
    return {
        "cores": os.cpu_count(),
        "cpu_model": cpu_model,
        "memory_gb": memory_gb,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "postgresql": postgres,
        "postgresql_settings": settings,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


@dataclass(frozen=True)
class _Process:
    pid: int
    ppid: int
    name: str
    cpu: float  # seconds of user + system time


def _processes() -> dict[int, _Process]:
    found: dict[int, _Process] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        # The name is in parentheses and may hold spaces: split after its closing one.
        name = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        found[int(entry.name)] = _Process(
            pid=int(entry.name),
            ppid=int(fields[1]),
            name=name,
            cpu=(int(fields[11]) + int(fields[12])) / _TICKS,
        )
    return found


def _busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])
    return (total - idle) / _TICKS, total / _TICKS


class CpuMeter:
    """CPU seconds per group of processes between `start()` and `stop()`.

    Groups: the process trees given by pid (and their children), PostgreSQL backends, Redis,
    and `other` (everything else on this shared machine, e.g. another session's tests).
    """

    def __init__(self, trees: dict[str, int]) -> None:
        self.trees = trees
        self._before: dict[int, _Process] = {}
        self._busy_before = (0.0, 0.0)

    def start(self) -> CpuMeter:
        self._before = _processes()
        self._busy_before = _busy_seconds()
        return self

    def _group(self, process: _Process, table: dict[int, _Process]) -> str:
        roots = {pid: name for name, pid in self.trees.items()}
        current: _Process | None = process
        while current is not None:
            if current.pid in roots:
                return roots[current.pid]
            current = table.get(current.ppid)
        if process.name == "postgres":
            return "postgresql"
        if process.name.startswith("redis-server"):
            return "redis"
        return "other"

    def stop(self) -> dict[str, float]:
        after = _processes()
        busy_after, total_after = _busy_seconds()
        groups: dict[str, float] = {name: 0.0 for name in self.trees}
        groups.update(postgresql=0.0, redis=0.0)
        for pid, process in after.items():
            previous = self._before.get(pid)
            spent = process.cpu - (previous.cpu if previous else 0.0)
            group = self._group(process, after)
            if group == "other":
                continue  # counted below as the rest of the machine's busy time
            groups[group] = groups.get(group, 0.0) + spent
        busy = busy_after - self._busy_before[0]
        wall_cores = total_after - self._busy_before[1]
        groups["other"] = max(0.0, busy - sum(groups.values()))
        result = {f"{name}_cpu_s": round(value, 2) for name, value in groups.items()}
        result["machine_busy_pct"] = round(100 * busy / wall_cores, 1) if wall_cores else 0.0
        return result
