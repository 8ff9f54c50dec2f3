"""Read a py-spy (inferno) flame graph SVG back into stacks and print where the samples went.

    python -m benchmarks.flame_summary results/<dir>/flame-plugin-memory.svg [--top 40] [--match fast_path]

Each frame of the SVG carries its sample offset and width (``fg:x``, ``fg:w``) and its depth (``y``),
so the stacks can be rebuilt exactly. Printed: total samples, then the functions with the most
inclusive samples (a function counted once per stack however often it recurses), each with its share
of all samples; ``--match`` keeps only functions whose name or file contains the text.
"""

from __future__ import annotations

import argparse
import html
import re
import sys
from collections import defaultdict
from pathlib import Path

FRAME = re.compile(
    r'<g><title>(?P<title>[^<]*)</title><rect x="[^"]*" y="(?P<y>[\d.]+)"'
    r'[^>]*fg:x="(?P<x>\d+)" fg:w="(?P<w>\d+)"'
)
TITLE = re.compile(r"^(?P<name>.*?) \((?P<where>[^()]*)\) \(\d[\d,]* samples?, [\d.]+%\)$")


def frames(svg: str) -> list[tuple[float, int, int, str]]:
    """(y, x, width, "function (file)") of every frame; line numbers dropped."""
    out = []
    for match in FRAME.finditer(svg):
        title = html.unescape(match["title"])
        parsed = TITLE.match(title)
        if parsed is None:
            continue  # the root ("all") frame
        where = parsed["where"].rsplit(":", 1)[0]
        out.append((float(match["y"]), int(match["x"]), int(match["w"]), f"{parsed['name']} ({where})"))
    return out


def inclusive(svg: str, under: str | None = None) -> tuple[int, dict[str, int]]:
    """Total samples and, per function, the samples of stacks it is on (counted once per stack);
    ``under``: only frames called (at any depth) from a function whose name contains that text."""
    found = frames(svg)
    if under is not None:
        roots = [(y, x, x + w) for y, x, w, name in found if under in name]
        found = [
            frame
            for frame in found
            if any(frame[0] > y and x <= frame[1] and frame[1] + frame[2] <= end for y, x, end in roots)
        ]
    total_match = re.search(r'total_samples="(\d+)"', svg)
    total = (
        int(total_match.group(1))
        if total_match
        else sum(w for y, _, w, _ in found if y == max(f[0] for f in found))
    )
    # Per sample offset, the set of functions on its stack: built from frame intervals.
    per_function: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for _, x, width, name in found:
        per_function[name].append((x, x + width))
    counts: dict[str, int] = {}
    for name, intervals in per_function.items():
        intervals.sort()
        covered, end = 0, -1
        for start, stop in intervals:  # union of the intervals: recursion counted once
            if stop <= end:
                continue
            covered += stop - max(start, end)
            end = stop
        counts[name] = covered
    return total, counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("svg", type=Path, nargs="+")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--match", default=None)
    parser.add_argument("--under", default=None, help="only what this function calls")
    args = parser.parse_args(argv)
    for path in args.svg:
        total, counts = inclusive(path.read_text(encoding="utf-8"), args.under)
        print(f"{path}: {total} samples")
        ranked = sorted(counts.items(), key=lambda item: -item[1])
        shown = 0
        for name, count in ranked:
            if args.match and args.match not in name:
                continue
            print(f"  {count / total * 100:5.1f}%  {count:6d}  {name}")
            shown += 1
            if shown >= args.top:
                break
    return 0


if __name__ == "__main__":
    sys.exit(main())
