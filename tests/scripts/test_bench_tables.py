"""docs/benchmarks.md's generated tables say what their data files hold: a changed figure in the
data (or a hand edit of the table) is found by ``scripts/bench_tables.py --check``."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import bench_tables  # noqa: E402


def test_the_docs_tables_are_up_to_date():
    for doc in bench_tables.DOCS:
        text = doc.read_text()
        assert bench_tables.BLOCK.search(text), f"{doc} has no generated table"
        assert bench_tables.render(text) == text, f"{doc} is out of date: run python scripts/bench_tables.py"


def test_a_changed_measurement_changes_the_table(tmp_path):
    folder = tmp_path / "streams"
    shutil.copytree(ROOT / "docs" / "benchmarks" / "streams-cpu-2026-12-07", folder)
    doc = tmp_path / "doc.md"
    doc.write_text(f"before\n<!-- table: lanes {folder} -->\nstale\n<!-- /table -->\nafter\n")
    assert bench_tables.main(["--check", str(doc)]) == 1
    assert bench_tables.main([str(doc)]) == 0 and bench_tables.main(["--check", str(doc)]) == 0
    table = doc.read_text()
    assert table.startswith("before\n") and table.endswith("<!-- /table -->\nafter\n") and "stale" not in table
    first = json.loads((folder / "this_1.json").read_text())
    fps = first["rows"][0]["total_fps"]
    assert f"{fps:.2f}" in table
    first["rows"][0]["total_fps"] = fps + 1.0
    (folder / "this_1.json").write_text(json.dumps(first))
    assert bench_tables.main(["--check", str(doc)]) == 1
    bench_tables.main([str(doc)])
    assert f"{fps + 1.0:.2f}" in doc.read_text()
