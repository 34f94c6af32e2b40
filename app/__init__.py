"""The application, one sub-package per floor of the data's path: io (sources in; recordings and
exports out) → pipeline → analytics → cli / gui / serve; jobs and bench beside. Knows video,
threads and Qt."""
