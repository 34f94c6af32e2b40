"""In and out: sources (files, cameras, URLs, image folders) and their reconnection; recordings,
segments and exports; the outputs' path rules and atomic writes."""
