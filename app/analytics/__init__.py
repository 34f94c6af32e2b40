"""After the detector: tracking, line and zone counting, events and what they feed (clips, alerts,
the heat map)."""
