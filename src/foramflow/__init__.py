"""foramflow: foraminifera images to down-core abundances."""

__version__ = "0.1.0"
