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


# Stages of a fast-path hit: (label, function whose inclusive samples it is). "our decision" is what
# _Attempt.run spends outside the LiteLLM calls it makes; "middleware in" what the proxy's middleware
# stack spends before the fast path gets the request; "server and loop" everything else in the process
# (uvicorn's HTTP parsing, the event loop, other tasks).
FAST_PATH_STAGES = (
    ("LiteLLM auth (user_api_key_auth)", "_Attempt._authenticate ("),
    ("LiteLLM model access (can_key_call_model, router settings)", "_Attempt._may_use ("),
    ("LiteLLM request setup (add_litellm_data_to_request)", "_Attempt._setup ("),
    ("pre-call hooks (built-in + the plugin's)", "_Attempt._run_hooks ("),
    ("response write (middleware send wrappers + uvicorn/h11)", "wrapped_app.<locals>.sender ("),
    ("hit logging (LiteLLM success callbacks, background)", "_log_hit_now ("),
)


def fast_path_stages(svg: str) -> list[tuple[str, float]]:
    """Shares of all samples per stage of a fast-path hit (see FAST_PATH_STAGES)."""
    total, counts = inclusive(svg)

    def find(prefix: str) -> int:
        return sum(count for name, count in counts.items() if prefix in name)

    rows = [(label, find(prefix)) for label, prefix in FAST_PATH_STAGES]
    run = find("_Attempt.run (")
    inside = sum(count for label, count in rows[:5])
    asgi = find("RequestResponseCycle.run_asgi (")
    fast = find("FastPathApp.__call__ (")
    rows.insert(5, ("our decision (probe, context, key, lookup, render, accounting)", max(0, run - inside)))
    rows.append(("middleware in (the proxy's ASGI stack before the fast path)", max(0, asgi - fast)))
    rows.append(("server and loop (uvicorn, event loop, the rest)", total - asgi - rows[-2][1]))
    return [(label, count / total) for label, count in rows]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("svg", type=Path, nargs="+")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--match", default=None)
    parser.add_argument("--under", default=None, help="only what this function calls")
    parser.add_argument("--stages", action="store_true", help="shares of a fast-path hit's stages")
    args = parser.parse_args(argv)
    if args.stages:
        for path in args.svg:
            print(path)
            for label, share in fast_path_stages(path.read_text(encoding="utf-8")):
                print(f"  {share * 100:5.1f}%  {label}")
        return 0
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
