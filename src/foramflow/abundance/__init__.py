"""Counts, relative abundances, corrections for the classifier's confusions, and reports.

The step is :func:`estimate_abundance` (a classification run's folder to written tables,
figure and report); :func:`analyse_core` is the analysis of a predictions table in memory.
"""

from foramflow._lazy import lazy_names

__all__ = [
    "AbundanceError",
    "AbundanceResult",
    "CoreAbundance",
    "Grouping",
    "Ratio",
    "analyse_core",
    "estimate_abundance",
    "read_age_model",
    "read_human_counts",
    "write_tables",
]

__getattr__, __dir__ = lazy_names(
    __name__,
    {
        "AbundanceError": "foramflow.abundance.inputs",
        "AbundanceResult": "foramflow.abundance.steps",
        "CoreAbundance": "foramflow.abundance.analysis",
        "Grouping": "foramflow.abundance.groups",
        "Ratio": "foramflow.abundance.groups",
        "analyse_core": "foramflow.abundance.analysis",
        "estimate_abundance": "foramflow.abundance.steps",
        "read_age_model": "foramflow.abundance.counts",
        "read_human_counts": "foramflow.abundance.compare",
        "write_tables": "foramflow.abundance.analysis",
    },
)
