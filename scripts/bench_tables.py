#!/usr/bin/env python3
"""Writes the benchmark tables of the docs from the files they were measured into, so that a table
and its data cannot drift apart.

A table is a block between ``<!-- table: NAME ARG -->`` and ``<!-- /table -->`` in a Markdown file;
NAME picks the writer below, ARG (a path from the repository root) the data:

* ``int8 assets/model_profiles.json`` — the bundled model's int8 verdicts (``run.py eval --precision
  fp32,int8 … --profile-file``): held-out AP50 per proposal count, fp32 and each scheme's int8.
* ``lanes docs/benchmarks/streams-cpu-2026-12-07`` — ``scripts/streams_bench.py`` JSONs named
  ``<tree>_<round>.json``: all streams' frames per second, a column per tree, the rounds side by side.

    python scripts/bench_tables.py            # rewrite docs/benchmarks.md's tables
    python scripts/bench_tables.py --check    # exit 1 (naming the table) when one is out of date
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DOCS = (ROOT / "docs" / "benchmarks.md",)
BLOCK = re.compile(r"(<!-- table: (\S+) (\S+) -->\n)(.*?)(<!-- /table -->)", re.S)
GATE = 0.01  # detector.profiles' int8 tolerance, as the verdict applied it
SCHEMES = {"int8:minmax-u8": "int8 8-bit (VNNI)", "int8:minmax-u8w7": "int8 7-bit weights (AVX2)",
           "int8:minmax-u7": "int8 7-bit activations (not used)"}


def int8_table(path: Path) -> list[str]:
    """The shipped model's verdicts (the profile entry of assets/default_model.pt's sha256)."""
    from detector.profiles import weights_sha256

    profiles = json.loads(path.read_text())
    sha = weights_sha256(ROOT / "assets" / "default_model.pt")
    entry = next((v for k, v in profiles.items() if f"sha256:{sha}" in k), None)
    if entry is None:
        raise SystemExit(f"{path} has no profile for assets/default_model.pt (sha256 {sha[:12]}…): measure it first")
    verdicts = {key: entry[key] for key in SCHEMES if key in entry}
    proposals = sorted({int(p) for v in verdicts.values() for p in v.get("by_proposals", {})})
    header = ["proposals", "fp32"] + [SCHEMES[k] + (f", {', '.join(f'`{x}`' for x in v['float_layers'])} in float"
                                                     if v.get("float_layers") else "") for k, v in verdicts.items()]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for p in proposals:
        fp32 = next(v["by_proposals"][str(p)][0] for v in verdicts.values() if str(p) in v["by_proposals"])
        cells = [str(p), f"{fp32:.3f}"]
        for v in verdicts.values():
            pair = v["by_proposals"].get(str(p))
            if pair is None:
                cells.append("—")
                continue
            loss = pair[0] - pair[1]
            cells.append(f"{pair[1]:.3f} " + ("✓" if loss <= GATE else f"✗ (−{loss:.3f})"))
        lines.append("| " + " | ".join(cells) + " |")
    where = next(iter(verdicts.values()))
    machine = f"; {where['machine']}" if where.get("machine") else ""
    return [*lines, "", f"Measured on {where['labels']}{machine}."]


def lanes_table(folder: Path) -> list[str]:
    """Total fps per stream count, one column per tree, its rounds in order."""
    fps: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for path in sorted(folder.glob("*_*.json"), key=lambda p: (p.stem.rsplit("_", 1)[0], int(p.stem.rsplit("_", 1)[1]))):
        tree = path.stem.rsplit("_", 1)[0]
        for row in json.loads(path.read_text())["rows"]:
            fps[tree][int(row["streams"])].append(row["total_fps"])
    if not fps:
        raise SystemExit(f"{folder}: no <tree>_<round>.json files of scripts/streams_bench.py")
    trees = sorted(fps, key=lambda t: t == "this")  # this tree last
    names = [("this tree" if t == "this" else t) for t in trees]
    lines = ["| streams | " + " | ".join(names) + " |", "|---|" + "---|" * len(trees)]
    for n in sorted({n for t in trees for n in fps[t]}):
        lines.append(f"| {n} | " + " | ".join(", ".join(f"{x:.2f}" for x in fps[t][n]) for t in trees) + " |")
    return lines


WRITERS = {"int8": int8_table, "lanes": lanes_table}


def render(text: str) -> str:
    def block(m: re.Match) -> str:
        name, arg = m.group(2), m.group(3)
        if name not in WRITERS:
            raise SystemExit(f"unknown table {name!r} (known: {', '.join(WRITERS)})")
        return m.group(1) + "\n".join(WRITERS[name](ROOT / arg)) + "\n" + m.group(5)

    return BLOCK.sub(block, text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="only say which file is out of date (exit 1)")
    p.add_argument("files", nargs="*", default=[str(f) for f in DOCS])
    args = p.parse_args(argv)
    stale = []
    for name in args.files:
        path = Path(name)
        text = path.read_text()
        new = render(text)
        if new != text:
            stale.append(str(path))
            if not args.check:
                path.write_text(new)
    if args.check and stale:
        print(f"out of date: {', '.join(stale)} (run: python scripts/bench_tables.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
