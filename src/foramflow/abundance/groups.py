"""Grouping of classes into the taxa that are reported, and ratios between them.

A study reports fewer, coarser categories than the classifier knows: the paper (Marchant et
al. 2020, §3.2.4) kept eight benthic species of interest and pooled the rest as "other
benthic", and left planktonic foraminifera, fragments and non-foraminiferal particles out of
the benthic denominator. A groups file says this once, in YAML::

    groups:
      other benthic: [cassidulina, cibicides, uvigerina_striata]
      planktonic: [g_ruber, g_bulloides]
    exclude: [unsure, fragment, planktonic, aggregate]

``groups`` maps a group name to its classes; a class not listed is its own group. ``exclude``
names classes or groups that leave the denominator of the relative abundances (default:
``unsure``); they are still counted and may appear in ratios.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from foramflow.errors import ForamflowError
from foramflow.io.class_names import UNSURE


class GroupingError(ForamflowError, ValueError):
    """A groups file or a ratio definition is invalid."""


class _GroupsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    groups: dict[str, list[str]] = {}
    exclude: list[str] = [UNSURE]


@dataclass(frozen=True)
class Grouping:
    """Classes → reported groups, and which names leave the abundance denominator."""

    groups: dict[str, list[str]] = field(default_factory=dict)
    exclude: tuple[str, ...] = (UNSURE,)

    def __post_init__(self):
        seen: dict[str, str] = {}
        for group, members in self.groups.items():
            for name in members:
                if name in seen:
                    raise GroupingError(
                        f"class {name!r} is in two groups: {seen[name]!r} and {group!r}"
                    )
                seen[name] = group

    @classmethod
    def from_yaml(cls, path: str | Path) -> Grouping:
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text()) or {}
            spec = _GroupsFile.model_validate(raw)
        except (OSError, UnicodeDecodeError, yaml.YAMLError, ValidationError) as err:
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise GroupingError(f"{path}: invalid groups file ({reason})") from err
        return cls(groups=spec.groups, exclude=tuple(spec.exclude))

    def group_of(self, name: str) -> str:
        """The group a class (or an already grouped taxon name) belongs to."""
        for group, members in self.groups.items():
            if name in members:
                return group
        return name

    def names(self) -> set[str]:
        """Every group, class and excluded name the grouping mentions."""
        members = {name for names in self.groups.values() for name in names}
        return set(self.groups) | members | set(self.exclude)

    def is_excluded(self, name: str) -> bool:
        return name in self.exclude or self.group_of(name) in self.exclude

    def members(self, term: str) -> set[str]:
        """Classes named by ``term``: a group's members, or the class itself."""
        return set(self.groups.get(term, [term])) | {term}

    def matrix(self, names: list[str], *, include_excluded: bool = False):
        """Aggregation matrix from ``names`` (classes or taxa) to groups.

        Returns ``(groups, A)`` with ``A`` of shape (len(names), len(groups)), 0/1 entries, so
        that ``counts @ A`` sums class counts into group counts. Groups follow the order of
        the groups file, then the order of first appearance in ``names``. Excluded names get
        a zero row unless ``include_excluded``.
        """
        kept = [n for n in names if include_excluded or not self.is_excluded(n)]
        present = {self.group_of(n) for n in kept}
        order = [g for g in self.groups if g in present]
        order += [g for g in dict.fromkeys(self.group_of(n) for n in kept) if g not in order]
        index = {g: j for j, g in enumerate(order)}
        matrix = np.zeros((len(names), len(order)))
        for i, name in enumerate(names):
            if include_excluded or not self.is_excluded(name):
                matrix[i, index[self.group_of(name)]] = 1.0
        return order, matrix


_RATIO = re.compile(r"^\s*([^=]+?)\s*=\s*(.+?)\s*/\s*(.+?)\s*$")


@dataclass(frozen=True)
class Ratio:
    """``name = numerator / denominator``, each a ``+``-joined list of groups or classes."""

    name: str
    numerator: tuple[str, ...]
    denominator: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> Ratio:
        """Parse ``NAME=A+B/C+D`` (e.g. ``benthic%=benthic/benthic+planktonic``)."""
        match = _RATIO.match(text)
        if not match:
            raise GroupingError(f"ratio {text!r}: expected NAME=NUMERATOR/DENOMINATOR")
        name, num, den = match.groups()
        terms = [tuple(t.strip() for t in part.split("+")) for part in (num, den)]
        if any(not t for part in terms for t in part):
            raise GroupingError(f"ratio {text!r}: empty term")
        return cls(name=name, numerator=terms[0], denominator=terms[1])

    def class_sets(self, grouping: Grouping) -> tuple[set[str], set[str]]:
        """The classes summed in the numerator and in the denominator."""
        num = set().union(*(grouping.members(t) for t in self.numerator))
        den = set().union(*(grouping.members(t) for t in self.denominator))
        return num, den

    def unknown_terms(self, grouping: Grouping, classes: set[str]) -> list[str]:
        """Terms that stand for none of ``classes``: they would count as zero, silently."""
        terms = dict.fromkeys((*self.numerator, *self.denominator))
        return [term for term in terms if not grouping.members(term) & classes]

    def kind(self, grouping: Grouping) -> str:
        """``"proportion"`` (numerator within denominator) or ``"odds"`` (disjoint sets)."""
        num, den = self.class_sets(grouping)
        if num <= den:
            return "proportion"
        if not num & den:
            return "odds"
        raise GroupingError(
            f"ratio {self.name!r}: the numerator must lie within the denominator "
            "or be disjoint from it"
        )


def check_ratio_terms(definitions, grouping: Grouping, classes: set[str]) -> None:
    """Refuse a ratio with a term that names no class (or group of classes) in ``classes``."""
    for ratio in definitions:
        unknown = ratio.unknown_terms(grouping, classes)
        if unknown:
            verb = "names" if len(unknown) == 1 else "name"
            known = f"classes: {', '.join(sorted(classes))}"
            if grouping.groups:
                known += f"; groups: {', '.join(grouping.groups)}"
            raise GroupingError(
                f"ratio {ratio.name!r}: {', '.join(map(repr, unknown))} {verb} no class or "
                f"group of the predictions ({known})"
            )
