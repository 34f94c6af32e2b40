"""The desktop window: the pipeline's display sink, with live controls (PyQt6). The entry point is
``app.gui.launch.run_gui``; ``fps_meter`` is pure logic without Qt."""
