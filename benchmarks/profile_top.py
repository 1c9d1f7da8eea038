"""Summarise a py-spy profile: the functions with the largest inclusive share of the samples.

Usage: ``python benchmarks/profile_top.py PROFILE.txt [--root create_task] [--top 30]``

``PROFILE.txt`` is py-spy's raw (collapsed-stack) output, ``py-spy record -f raw -o
PROFILE.txt -- ...``. With ``--root``, only samples whose stack passes through a frame whose
name contains it count, and each stack is cut at that frame (e.g. ``run_endpoint_function``:
the request handlers). Prints, per function (line numbers dropped), the percentage of those
samples in which it is on the stack (inclusive) and, after, at the top of it (self).
"""

from __future__ import annotations

import argparse
import collections
import re
from pathlib import Path

_LINE = re.compile(r":\d+\)$")


def summarise(
    path: Path, root: str | None = None
) -> tuple[int, collections.Counter[str], collections.Counter[str]]:
    """Return (samples counted, inclusive samples per function, self samples per function)."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        stack, count_text = line.rsplit(" ", 1)
        count = int(count_text)
        frames = [_LINE.sub(")", frame) for frame in stack.split(";")]
        if root is not None:
            starts = [i for i, frame in enumerate(frames) if root in frame]
            if not starts:
                continue
            frames = frames[starts[0] :]
        total += count
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1]] += count
    return total, inclusive, own


def main() -> None:
    """Parse arguments and print the summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--root", default=None)
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    total, inclusive, own = summarise(args.profile, args.root)
    print(f"{total} samples")
    for frame, count in inclusive.most_common(args.top):
        print(f"{100 * count / max(total, 1):5.1f}%  {frame}")
    print("-- self")
    for frame, count in own.most_common(min(args.top, 15)):
        print(f"{100 * count / max(total, 1):5.1f}%  {frame}")


if __name__ == "__main__":
    main()
