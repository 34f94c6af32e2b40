"""The bench's default settings, shared by its options (app/bench/__init__.py) and ``BenchConfig``."""

DEFAULT_PROPOSALS = (50, 100, 300, 1000, 2000)
DEFAULT_FRAMES = 100
DEFAULT_WARMUP = 5
