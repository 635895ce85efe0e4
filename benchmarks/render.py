"""Render time and peak memory of the two documents, HTML and PDF, from a stored result.

    python benchmarks/render.py [--folder reports/<id>] [--repeat 3]

Default folder: the test fixture (the example graded and written up under smoke). Each
document is rendered --repeat times the way the CLI does it, in a child process, and the
median times and the child's peak memory are printed. For comparison in the same run, the
same renders are repeated inside this process, showing the resident memory that rendering
leaves behind in a long-lived process (matplotlib, fonts, WeasyPrint's caches): the memory a
batch run's parent saves by rendering in a child that exits.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.documents.render import documents_in, render_folder, render_here  # noqa: E402


def rss_mb() -> float:
    """This process's current resident memory."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--folder", type=Path, default=ROOT / "tests" / "fixtures" / "example-smoke")
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "doc"
        shutil.copytree(args.folder, folder, ignore=shutil.ignore_patterns("*.html", "*.pdf"))
        documents = documents_in(folder)
        print(f"folder {args.folder}, documents {', '.join(documents)}, {args.repeat} renders each\n")
        print(
            f"{'document':<10}{'HTML s':>9}{'PDF s':>9}{'total s':>9}{'peak MB':>10}{'PDF/HTML':>10}"
            f"{'HTML KB':>9}{'PDF KB':>9}"
        )
        for document in documents:
            runs = []
            for _ in range(args.repeat):
                started = time.perf_counter()
                (r,) = render_folder(folder, [document])
                if r.error:
                    raise SystemExit(f"{document}: {r.error}")
                runs.append((r.html_seconds, r.pdf_seconds, time.perf_counter() - started, r.peak_mb))
            html_s, pdf_s, total_s, peak = (statistics.median(c) for c in zip(*runs, strict=False))
            print(
                f"{document:<10}{html_s:>9.2f}{pdf_s:>9.2f}{total_s:>9.2f}{peak:>10.0f}{pdf_s / html_s:>10.2f}"
                f"{r.html.stat().st_size / 1024:>9.0f}{r.pdf.stat().st_size / 1024:>9.0f}"
            )
        print("\n(total: the child process's whole life, including Python start-up and imports)")

        print("\nin this process instead, rendering one after another (resident memory after each):")
        before = rss_mb()
        for i in range(args.repeat):
            for document in documents:
                render_here(folder, document)
            print(
                f"  round {i + 1}: {rss_mb():.0f} MB (+{rss_mb() - before:.0f} MB over this process before rendering)"
            )


if __name__ == "__main__":
    main()
