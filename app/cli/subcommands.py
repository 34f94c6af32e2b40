"""The jobs of the command line besides ``run``: name → (module with ``main(argv)``, one line of help).

Its own module so that ``app.cli.cli`` (which dispatches) and ``app.cli.run`` (whose --help lists them) both
read it without importing each other.
"""

from __future__ import annotations

SUBCOMMANDS = {
    "bench": ("app.bench", "proposal count vs fps (and AP), per stage, with a naive baseline"),
    "train": ("app.jobs.train", "train or fine-tune a model on COCO-format data"),
    "eval": ("app.jobs.evaluate", "COCO AP/AP50 of a model on a COCO JSON"),
    "autolabel": ("app.jobs.autolabel", "label a video or image folder with the teacher → COCO JSON"),
    "serve": ("app.serve", "many streams on a Ray cluster: the detector as a batched Ray Serve deployment"),
}


def subcommand_help() -> str:
    """Lines for the main --help, listing the other jobs."""
    return "other jobs:\n" + "\n".join(f"  {name:<10} {text}" for name, (_, text) in SUBCOMMANDS.items())
