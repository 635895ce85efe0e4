"""The cache's entry lock: one process builds an entry, the others wait and then read it."""

from __future__ import annotations

import subprocess
import sys
import threading

from harness.reference.cache import building


def hold(final, then: str = "time.sleep(600)") -> subprocess.Popen:
    """Another process inside ``building(final)``; returns once it holds the lock."""
    code = (
        "import time\nfrom pathlib import Path\nfrom harness.reference.cache import building\n"
        f"final = Path({str(final)!r})\n"
        f"with building(final):\n    print('held', flush=True)\n    {then}\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_process_waits_for_the_entry_being_built_and_then_finds_it(tmp_path, capsys):
    final = tmp_path / "reference" / "entry"
    holder = hold(final, "time.sleep(1.5); final.mkdir(); (final / 'done').write_text('x')")
    try:
        with building(final):
            assert (final / "done").is_file()  # not before the holder had finished the entry
    finally:
        holder.kill()
        holder.wait()
    assert f"waiting for another process that is building {final}" in capsys.readouterr().err


def test_the_entry_lock_is_released_when_its_holder_dies(tmp_path):
    final = tmp_path / "entry"
    holder = hold(final)
    holder.kill()
    holder.wait()
    acquired = threading.Event()

    def take() -> None:
        with building(final, quiet=True):
            acquired.set()

    threading.Thread(target=take, daemon=True).start()
    assert acquired.wait(60), "the lock of a killed process was never released"
