#!/usr/bin/env python3
"""The door: `python run.py --video clip.mp4 --record out.mp4`, `python run.py --camera 0`,
`python run.py bench ...`. Everything happens in app.cli.cli."""

from app.cli.cli import console_main

if __name__ == "__main__":
    console_main()
