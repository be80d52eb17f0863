"""What a gateway process does to its heap before it serves (``_serve.settle_heap``)."""

from __future__ import annotations

import subprocess
import sys

_PROBE = """
import gc
from aimsguard.agent._serve import settle_heap
kept = [[n] for n in range(1000)]  # loaded before serving: lives as long as the process
before = gc.get_threshold()
settle_heap()
assert gc.get_freeze_count() >= len(kept), gc.get_freeze_count()
assert gc.get_threshold()[0] > 10 * before[0] and gc.get_threshold()[1:] == before[1:], (before, gc.get_threshold())
assert gc.isenabled()
"""


def test_settle_heap_freezes_what_is_loaded_and_collects_young_objects_less_often() -> None:
    # In a process of its own: freezing is process-wide, and this one runs the other tests.
    subprocess.run([sys.executable, "-c", _PROBE], check=True)
