"""The optical resolution assumed when none is given, kept apart from numpy-heavy modules so
that the command line can show it without importing them."""

#: Pixels per mm of the set-up of Marchant et al. (2020).
DEFAULT_PIXELS_PER_MM = 1159.4
