#!/usr/bin/env python3
"""The door: `python run.py --video clip.mp4 --record out.mp4`, `python run.py --camera 0`,
`python run.py bench ...`. Everything happens in app.cli."""

import sys

from app.cli import main

if __name__ == "__main__":
    sys.exit(main())
