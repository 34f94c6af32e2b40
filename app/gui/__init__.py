"""The desktop window: the pipeline's display sink, with live controls (PyQt6).

``app.gui.launch.run_gui`` is the entry point; ``fps_meter`` is pure logic without Qt.
"""
