"""Run `gated` with a wrong wall clock: `python -m sim.skewed OFFSET_S gated-args...`.

The simulator's clock-skew fault. A gate's system clock is hardware as far as the gate is
concerned (an RTC that drifted, a board without one), so this fakes the world, not the gate:
time.time() and time.time_ns() run OFFSET_S seconds ahead (or behind) before any gated module
is imported, so defaults bound at import (`wall=time.time`) see the skewed clock too. The
monotonic clock is left alone, as a real drifted RTC would leave it.
"""

from __future__ import annotations

import sys
import time


def main(argv: list[str]) -> int:
    offset = float(argv[0])
    real_time, real_time_ns = time.time, time.time_ns
    time.time = lambda: real_time() + offset
    time.time_ns = lambda: real_time_ns() + int(offset * 1e9)
    from gated.cli import main as gated_main

    return gated_main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
