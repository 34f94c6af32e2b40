"""The application: sources → pipeline → render / record / export / GUI. Knows video, threads and Qt."""
