"""The pipeline: N lanes (one per source) around one batching detector worker, its sinks and
drawing, the thread budget, building the detector and the ``--target-fps`` controller."""
