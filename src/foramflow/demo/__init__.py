"""``foramflow demo``: the whole method on a synthetic core whose truth is known.

:func:`run_demo` draws a core, stacks, segments, trains, classifies and estimates
abundances, and writes one HTML report that scores every stage against the truth.
"""

from foramflow.demo.pipeline import DemoFolderError, run_demo
from foramflow.demo.profiles import DEFAULT, QUICK, TINY, Profile

__all__ = ["DEFAULT", "QUICK", "TINY", "DemoFolderError", "Profile", "run_demo"]
