"""The command line: the dispatch of ``run.py`` / ``frcnn-video`` (cli.py, subcommands.py), the run
command for one stream or many (run.py, multi_run.py) and what it prints (console.py, progress.py)."""
