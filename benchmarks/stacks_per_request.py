"""Read py-spy's collapsed stacks (``hit_path --profile --profile-raw``) as time per request.

    python -m benchmarks.stacks_per_request STACKS.txt[.gz] --requests N [--rate 400]
        [--base OTHER.txt[.gz] --base-requests M] [--under FUNCTION] [--match TEXT] [--top 40]

A sample is ``1000 / rate`` ms of one thread's time; dividing by the requests the process answered
while it was sampled (``hit_path`` prints that number) gives each function's inclusive time per
request (a function counted once per stack however often it recurses), comparable between two
servers that answered different numbers of requests. ``--base``: the difference against another
profile, largest first (what one server spends per request that the other does not). ``--under``:
only what a function calls, grouped by the next ``--depth`` frames below it.

Read these as shares, not as clock time: py-spy slows the process it samples, native code is
attributed to the Python frame that called it, and a thread waiting for the GIL may be sampled too.
"""

from __future__ import annotations

import argparse
import gzip
import re
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

_LINE = re.compile(r" \((?P<path>[^()]*):\d+\)$")
# Where a file lives, up to the package: "litellm/proxy/utils.py", "litellm_cache_plugin/store/redis.py".
_PREFIX = re.compile(r"^(.*/site-packages/|.*/lib/python3\.\d+/|/work/[^/]+/)")


def stacks(path: Path) -> Iterator[tuple[list[str], int]]:
    """(frames outermost first, as "function (package/path.py)", sample count) of every line."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as lines:
        for line in lines:
            line = line.rstrip("\n")
            if not line:
                continue
            stack, _, count = line.rpartition(" ")
            frames = [
                _LINE.sub(lambda m: f" ({_PREFIX.sub('', m['path'])})", frame) for frame in stack.split(";")
            ]
            yield frames, int(count)


def inclusive(path: Path) -> Counter[str]:
    """Samples per function, each stack counted once per function on it."""
    found: Counter[str] = Counter()
    for frames, count in stacks(path):
        for name in set(frames):
            found[name] += count
    return found


def under(path: Path, function: str, depth: int) -> Counter[str]:
    """Samples of the stacks below the outermost frame whose name starts with ``function``,
    grouped by the ``depth`` frames right below it ("(self)": in the function itself)."""
    found: Counter[str] = Counter()
    for frames, count in stacks(path):
        at = next((i for i, frame in enumerate(frames) if frame.startswith(function)), None)
        if at is not None:
            found[" > ".join(frames[at + 1 : at + 1 + depth]) or "(self)"] += count
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("stacks", type=Path)
    parser.add_argument("--requests", type=float, required=True, help="requests answered while sampled")
    parser.add_argument("--rate", type=float, default=400.0, help="py-spy samples per second")
    parser.add_argument("--base", type=Path, default=None, help="another profile to subtract")
    parser.add_argument("--base-requests", type=float, default=None)
    parser.add_argument("--under", default=None, help="only what this function calls")
    parser.add_argument("--depth", type=int, default=1, help="frames below --under to group by")
    parser.add_argument("--match", default=None, help="only functions whose name or file contains this")
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args(argv)
    if args.base is not None and args.base_requests is None:
        parser.error("--base needs --base-requests")
    us_per_sample = 1e6 / args.rate

    def per_request(path: Path, requests: float) -> dict[str, float]:
        counts = under(path, args.under, args.depth) if args.under else inclusive(path)
        return {name: count * us_per_sample / requests for name, count in counts.items()}

    ours = per_request(args.stacks, args.requests)
    theirs = per_request(args.base, args.base_requests) if args.base is not None else {}
    rows = sorted(set(ours) | set(theirs), key=lambda name: -(ours.get(name, 0.0) - theirs.get(name, 0.0)))
    unit = "us per request" + (" (this profile, base, difference)" if theirs else "")
    print(f"{args.stacks}: {unit}" + (f" under {args.under}" if args.under else ""))
    for name in [name for name in rows if not args.match or args.match in name][: args.top]:
        mine = ours.get(name, 0.0)
        base = f"{theirs.get(name, 0.0):8.1f} {mine - theirs.get(name, 0.0):+8.1f}  " if theirs else ""
        print(f"  {mine:8.1f} {base} {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
