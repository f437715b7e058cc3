"""Which images to classify, and which sample (and depth) each one belongs to.

Images are found recursively under IMAGES_DIR. The sample of an image is, by default, its
first folder under IMAGES_DIR (an image lying directly in IMAGES_DIR belongs to a sample named
after IMAGES_DIR itself). Alternatively a regular expression on the relative path, or a table
(CSV) mapping image paths or folders to samples and depths, decides.
"""

from __future__ import annotations

import errno
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISDIR, S_ISREG

import pandas as pd

from foramflow.errors import ForamflowError, InputNotFound
from foramflow.io.images import is_image_file
from foramflow.io.limits import MAX_TABLE_BYTES, check_size
from foramflow.io.tables import DEPTH, TableError, depth_unit, find_depth_column


class SampleError(ForamflowError, ValueError):
    """The sample of some images cannot be decided from the rule given."""


@dataclass(frozen=True)
class SampleRule:
    """How to decide the sample of an image; at most one of ``regex`` and ``table``.

    ``regex`` is searched in the image path relative to IMAGES_DIR (POSIX separators); the
    sample is its group named ``sample``, else its first group, else the whole match; a group
    named ``depth`` gives the depth, one named ``depth_<unit>`` (``depth_cm``) the depth and
    its unit. ``table`` is a CSV file with a ``sample`` column, an optional ``depth`` or
    ``depth_<unit>`` column, and either a ``path`` column (image paths relative to
    IMAGES_DIR), a ``folder`` column (folders relative to IMAGES_DIR; an image belongs to the
    deepest listed folder that holds it), or neither (then samples come from the folders and
    the table only adds their depths).
    """

    regex: str | None = None
    table: str | None = None

    def __post_init__(self):
        if self.regex is not None and self.table is not None:
            raise SampleError("give either a sample regex or a sample table, not both")
        if self.regex is not None:
            try:
                re.compile(self.regex)
            except re.error as err:
                raise SampleError(f"invalid sample regex {self.regex!r}: {err}") from None

    def depth_unit(self) -> str | None:
        """The unit of the depths, as the regex group or the table column names it."""
        if self.regex is not None:
            group = _depth_group(re.compile(self.regex))
            return depth_unit(group) if group else None
        if self.table is not None:
            return read_sample_table(Path(self.table)).attrs["depth_unit"]
        return None

    def describe(self) -> str:
        if self.regex is not None:
            return f"regex {self.regex}"
        if self.table is not None:
            return f"table {Path(self.table).resolve()}"
        return "first folder"


def find_images(
    images_dir: str | Path, *, on_skip: Callable[[str, str], None] = lambda path, reason: None
) -> pd.DataFrame:
    """All image files below ``images_dir``: columns path (relative, POSIX), size, mtime_ns
    and problem ("" for a file that can be read).

    Symbolic links are followed (directory loops are visited once); hidden files and folders
    are skipped. An entry named like an image that cannot be one (a broken link, a link loop,
    a name that is not valid UTF-8) is listed with its problem, so that it is reported rather
    than lost. A folder that cannot be searched is passed to ``on_skip`` with the reason.
    Rows are sorted by path, so that the same folder always gives the same list.
    """
    root = Path(images_dir)
    if not root.is_dir():
        raise InputNotFound(f"{root}: not a folder")
    rows: list[tuple[str, int, int, str]] = []
    seen_dirs: set[tuple[int, int]] = set()
    stack = [(root, "")]
    while stack:
        folder, prefix = stack.pop()
        try:
            info = folder.stat()
            if (info.st_dev, info.st_ino) in seen_dirs:
                continue
            seen_dirs.add((info.st_dev, info.st_ino))
            with os.scandir(folder) as listing:
                entries = list(listing)
        except OSError as err:
            on_skip(printable_name(prefix.rstrip("/")) or ".", _os_problem(err))
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            rel = prefix + entry.name
            try:
                stat = entry.stat()
            except OSError as err:
                _broken_entry(rel, _os_problem(err), rows, on_skip)
                continue
            if S_ISDIR(stat.st_mode):
                stack.append((Path(entry.path), rel + "/"))
            elif is_image_file(Path(entry.name)):
                problem = "" if S_ISREG(stat.st_mode) else "not a regular file"
                rows.append(_image_row(rel, stat.st_size, stat.st_mtime_ns, problem))
    rows.sort()
    return pd.DataFrame(rows, columns=["path", "size", "mtime_ns", "problem"]).astype(
        {"path": str, "size": "int64", "mtime_ns": "int64", "problem": str}
    )


def printable_name(name: str) -> str:
    """``name`` with the bytes of a file name that is not valid UTF-8 written as \\xNN, so
    that it can be stored in a table and shown (os.scandir hands them over as surrogates)."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def _image_row(rel: str, size: int, mtime_ns: int, problem: str) -> tuple[str, int, int, str]:
    shown = printable_name(rel)
    if shown != rel and not problem:
        name = rel.rpartition("/")[2]
        which = "file" if printable_name(name) != name else "folder"
        problem = f"{which} name is not valid UTF-8; rename it to classify the image"
    return shown, size, mtime_ns, problem


def _broken_entry(rel: str, problem: str, rows: list, on_skip) -> None:
    """An entry whose target cannot be reached: an error row when it is named like an image
    (sizes -1), else a skipped entry (it may have been a folder of images)."""
    if is_image_file(Path(rel)):
        rows.append(_image_row(rel, -1, -1, problem))
    else:
        on_skip(printable_name(rel), problem)


def _os_problem(err: OSError) -> str:
    if err.errno == errno.ELOOP:
        return "symbolic link loop"
    if err.errno == errno.ENOENT:
        return "broken symbolic link (its target does not exist)"
    return f"cannot be read ({err.strerror or err})"


def assign_samples(
    paths: list[str], rule: SampleRule, *, root_name: str
) -> tuple[list[str], list[float]]:
    """The sample and depth (NaN when unknown) of each relative image path."""
    if rule.regex is not None:
        return _by_regex(paths, re.compile(rule.regex))
    if rule.table is not None:
        return _by_table(paths, Path(rule.table), root_name=root_name)
    return [_first_folder(p, root_name) for p in paths], [math.nan] * len(paths)


def _first_folder(path: str, root_name: str) -> str:
    head, sep, _ = path.partition("/")
    return head if sep else root_name


def _by_regex(paths: list[str], pattern: re.Pattern) -> tuple[list[str], list[float]]:
    samples, depths, unmatched = [], [], []
    depth_group = _depth_group(pattern) or DEPTH
    for path in paths:
        match = pattern.search(path)
        if match is None:
            unmatched.append(path)
            continue
        groups = match.groupdict()
        if "sample" in groups:
            sample = groups["sample"]
        elif pattern.groups:
            sample = match.group(1)
        else:
            sample = match.group(0)
        samples.append(sample or "")
        depths.append(_to_depth(groups.get(depth_group), path))
    if unmatched:
        raise SampleError(
            f"sample regex {pattern.pattern!r} matches no part of {len(unmatched)} image path(s), "
            f"e.g. {', '.join(unmatched[:3])}"
        )
    return samples, depths


def _to_depth(text: str | None, where: str) -> float:
    if text is None or text == "":
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise SampleError(f"{where}: depth {text!r} is not a number") from None


def read_sample_table(path: Path) -> pd.DataFrame:
    """Read and check a sample table (see :class:`SampleRule`)."""
    try:
        check_size(path, path.stat().st_size, MAX_TABLE_BYTES, "sample table")
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise SampleError(f"{path}: cannot read sample table ({err})") from None
    table.columns = [c.strip().lower() for c in table.columns]
    try:
        depth_name = find_depth_column(table.columns, path)
    except TableError as err:
        raise SampleError(str(err)) from None
    unit = depth_unit(depth_name) if depth_name else None
    table = table.rename(columns={depth_name: DEPTH}) if depth_name else table
    if "sample" not in table.columns:
        raise SampleError(f"{path}: sample table needs a 'sample' column")
    if "path" in table.columns and "folder" in table.columns:
        raise SampleError(f"{path}: sample table has both 'path' and 'folder' columns; keep one")
    depth = table["depth"] if "depth" in table.columns else pd.Series([""] * len(table))
    table["depth"] = [_to_depth(d.strip(), f"{path} row {i + 2}") for i, d in enumerate(depth)]
    for key in ("path", "folder"):
        if key in table.columns:
            table[key] = [_normalise(p) for p in table[key]]
            duplicated = table[key][table[key].duplicated()]
            if len(duplicated):
                raise SampleError(f"{path}: {key} {duplicated.iloc[0]!r} is listed twice")
    table.attrs["depth_unit"] = unit
    return table


def _depth_group(pattern: re.Pattern) -> str | None:
    """The regex group that gives the depth (``depth`` or ``depth_<unit>``), if any."""
    try:
        return find_depth_column(pattern.groupindex, f"sample regex {pattern.pattern!r}")
    except TableError as err:
        raise SampleError(str(err)) from None


def _normalise(rel: str) -> str:
    parts = [p for p in rel.strip().replace("\\", "/").split("/") if p not in ("", ".")]
    return "/".join(parts)


def _by_table(
    paths: list[str], table_path: Path, *, root_name: str
) -> tuple[list[str], list[float]]:
    table = read_sample_table(table_path)
    if "path" in table.columns:
        lookup = {row.path: (row.sample, row.depth) for row in table.itertuples()}
        found = [lookup.get(p) for p in paths]
    elif "folder" in table.columns:
        lookup = {row.folder: (row.sample, row.depth) for row in table.itertuples()}
        found = [_deepest_folder(p, lookup) for p in paths]
    else:
        depths = dict(zip(table["sample"], table["depth"], strict=True))
        samples = [_first_folder(p, root_name) for p in paths]
        return samples, [depths.get(s, math.nan) for s in samples]
    missing = [p for p, f in zip(paths, found, strict=True) if f is None]
    if missing:
        raise SampleError(
            f"{table_path}: no sample for {len(missing)} image(s), e.g. {', '.join(missing[:3])}"
        )
    return [f[0] for f in found], [f[1] for f in found]


def _deepest_folder(path: str, lookup: dict[str, tuple[str, float]]) -> tuple[str, float] | None:
    parts = path.split("/")[:-1]
    for end in range(len(parts), -1, -1):
        hit = lookup.get("/".join(parts[:end]))
        if hit is not None:
            return hit
    return None
