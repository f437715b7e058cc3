"""FlowCam exports: the ``.lst`` particle list and its collages, split into one crop each.

A FlowCam (VisualSpreadsheet) export folder holds collage images, each a mosaic of many
particles, and a ``.lst`` file describing every particle. The ``.lst`` file is a version
line, a ``num-fields|N`` line, then N ``name|type`` lines naming the fields, then one line
per particle whose ``|``-separated values follow that order. Four fields place a particle
in its collage: ``collage_file`` and the box ``image_x``, ``image_y`` (top-left corner, in
pixels), ``image_w``, ``image_h``. :func:`split_collages` cuts each box out unchanged (no
resampling, PNG is lossless) into ``OUT/<export folder name>/<id>.png``, so the export
folder is the sample, as everywhere else in foramflow.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from foramflow.errors import ForamflowError
from foramflow.io.files import prepare_output_dir
from foramflow.io.images import MAX_PIXELS, ImageReadError, image_size
from foramflow.progress import Progress, Quiet

#: The fields a particle needs to be cut out of its collage.
BOX_FIELDS = ("collage_file", "image_x", "image_y", "image_w", "image_h")


class FlowCamError(ForamflowError, ValueError):
    """A FlowCam export that cannot be read as its ``.lst`` file describes it."""


@dataclass(frozen=True)
class FlowCamParticle:
    """One particle of the ``.lst`` file: its id, collage, box and every other field."""

    id: str
    collage: str
    x: int
    y: int
    width: int
    height: int
    line: int  # in the .lst file, for messages
    fields: dict[str, str]


def find_lst(folder: str | Path) -> Path:
    """The one ``.lst`` file of an export folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FlowCamError(f"{folder}: not a folder")
    found = sorted(folder.glob("*.lst"))
    if len(found) != 1:
        what = "no .lst file" if not found else f"{len(found)} .lst files"
        raise FlowCamError(f"{folder}: {what}; a FlowCam export holds exactly one")
    return found[0]


def read_lst(path: str | Path) -> list[FlowCamParticle]:
    """Every particle listed in a ``.lst`` file; a malformed line names the file and line."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as err:
        raise FlowCamError(f"{path}: cannot be read ({err.strerror})") from None
    names = _field_names(path, lines)
    missing = [name for name in (*BOX_FIELDS, "id") if name not in names]
    if missing:
        raise FlowCamError(f"{path}: line 2: no field {', '.join(missing)} in the header")
    particles, seen = [], set()
    for number, text in enumerate(lines[2 + len(names) :], start=3 + len(names)):
        if not text.strip():
            continue
        values = text.split("|")
        if len(values) != len(names):
            raise FlowCamError(
                f"{path}: line {number}: {len(values)} values, the header names {len(names)}"
            )
        particle = _particle(path, number, dict(zip(names, values, strict=True)))
        if int(particle.id) in seen:
            raise FlowCamError(f"{path}: line {number}: particle id {particle.id} listed twice")
        seen.add(int(particle.id))
        particles.append(particle)
    return particles


def _field_names(path: Path, lines: list[str]) -> list[str]:
    if len(lines) < 2 or not lines[1].startswith("num-fields|"):
        raise FlowCamError(f"{path}: line 2: expected 'num-fields|N', the .lst header")
    try:
        count = int(lines[1].split("|", 1)[1])
    except ValueError:
        raise FlowCamError(f"{path}: line 2: the number of fields is not a number") from None
    if count < 1 or len(lines) < 2 + count:
        raise FlowCamError(f"{path}: line 2: {count} fields announced, fewer lines follow")
    names = []
    for number, text in enumerate(lines[2 : 2 + count], start=3):
        name, sep, _type = text.partition("|")
        if not sep or not name.strip():
            raise FlowCamError(f"{path}: line {number}: expected 'name|type', got {text!r}")
        names.append(name.strip())
    return names


def _particle(path: Path, number: int, fields: dict[str, str]) -> FlowCamParticle:
    try:
        x, y, width, height = (int(fields[k]) for k in BOX_FIELDS[1:])
    except ValueError:
        problem = "the particle's box is not whole numbers"
        raise FlowCamError(f"{path}: line {number}: {problem}") from None
    if x < 0 or y < 0 or width < 1 or height < 1:
        box = f"{x},{y},{width}×{height}"
        raise FlowCamError(f"{path}: line {number}: empty or negative box {box}")
    collage = fields["collage_file"].strip()
    if not collage or Path(collage).name != collage or collage.startswith("."):
        raise FlowCamError(f"{path}: line {number}: collage {collage!r} is not a file name")
    identifier = fields["id"].strip()
    if not identifier.isdigit():
        raise FlowCamError(f"{path}: line {number}: particle id {identifier!r} is not a number")
    return FlowCamParticle(identifier, collage, x, y, width, height, number, fields)


def split_collages(
    export: str | Path, out: str | Path, *, progress: Progress | None = None
) -> list[Path]:
    """Cut every particle of a FlowCam export out of its collage; returns the crops written.

    Everything is checked (collages present, boxes inside them) before the first crop is
    written, so a bad export leaves ``out`` without crops.
    """
    progress = progress or Quiet()
    export = Path(export)
    lst = find_lst(export)
    particles = read_lst(lst)
    sizes = _collage_sizes(export, lst, particles)
    for particle in particles:
        width, height = sizes[particle.collage]
        if particle.x + particle.width > width or particle.y + particle.height > height:
            raise FlowCamError(
                f"{lst}: line {particle.line}: box {particle.x},{particle.y},"
                f"{particle.width}×{particle.height} is outside {particle.collage} "
                f"({width}×{height})"
            )
    folder = prepare_output_dir(Path(out)) / export.resolve().name
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    task = progress.task("splitting collages", len(particles))
    try:
        for name in sizes:
            with Image.open(export / name) as collage:
                for particle in (p for p in particles if p.collage == name):
                    box = (particle.x, particle.y, particle.x + particle.width)
                    crop = collage.crop((*box, particle.y + particle.height))
                    target = folder / f"{int(particle.id):06d}.png"
                    crop.save(target)
                    written.append(target)
                    task.advance()
    finally:
        task.done()
    return written


def _collage_sizes(export: Path, lst: Path, particles: list[FlowCamParticle]) -> dict:
    sizes: dict[str, tuple[int, int]] = {}
    for particle in particles:
        if particle.collage in sizes:
            continue
        path = export / particle.collage
        if not path.is_file():
            raise FlowCamError(
                f"{lst}: line {particle.line}: collage {particle.collage} not found in {export}"
            )
        try:
            width, height = image_size(path)
        except ImageReadError as err:
            raise FlowCamError(f"{lst}: line {particle.line}: {err}") from None
        if width * height > MAX_PIXELS:
            raise FlowCamError(f"{path}: {width}×{height} pixels, over the image cap")
        sizes[particle.collage] = (width, height)
    return sizes
