"""Chamber geometry of foraminifera-like tests, in model units (last chamber radius about 1).

A test is a set of chambers, each an ellipsoid ``(p - c)ᵀ A (p - c) ≤ 1``. The arrangement of
the chambers is what tells the morphotypes apart, as it does for a micropalaeontologist:
chambers on a rising spiral (trochospiral), on a flat spiral (planispiral), in two alternating
rows (biserial), in one row (uniserial), or one big sphere (spherical). Fragments are whole
tests cut by a jagged line; doubles are two small whole tests touching. Every layout is posed
by a random 3-D rotation so the same morphotype is seen from the spiral side, the umbilical
side or edge-on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from foramflow.errors import InvalidInput

WHOLE_MORPHOTYPES = ("trochospiral", "planispiral", "biserial", "uniserial", "spherical")
MORPHOTYPES = (*WHOLE_MORPHOTYPES, "fragment", "double")


@dataclass(frozen=True)
class Chambers:
    """Ellipsoidal chambers: ``centres`` (N, 3), quadratic forms ``forms`` (N, 3, 3).

    ``albedo`` (N,) is each chamber's relative brightness (wall thickness varies).
    """

    centres: np.ndarray
    forms: np.ndarray
    albedo: np.ndarray

    def rotated(self, rotation: np.ndarray) -> Chambers:
        """Rotate about the origin: centres → R c, forms → R A Rᵀ."""
        return Chambers(self.centres @ rotation.T, rotation @ self.forms @ rotation.T, self.albedo)

    def shifted(self, offset) -> Chambers:
        return Chambers(self.centres + np.asarray(offset, float), self.forms, self.albedo)

    def extents(self) -> np.ndarray:
        """Half-widths (N, 3) of each chamber's axis-aligned bounding box."""
        return np.sqrt(np.diagonal(np.linalg.inv(self.forms), axis1=1, axis2=2))

    def outline_points(self, n_per_chamber: int = 48) -> np.ndarray:
        """Points (N·n, 2) on the outline of each chamber's projection onto the x–y plane."""
        # The projected ellipse of an ellipsoid is given by the x–y block of A⁻¹.
        covariance = np.linalg.inv(self.forms)[:, :2, :2]
        factor = np.linalg.cholesky(covariance)
        angle = np.linspace(0, 2 * np.pi, n_per_chamber, endpoint=False)
        circle = np.stack([np.cos(angle), np.sin(angle)])
        return (self.centres[:, :2, None] + factor @ circle).transpose(0, 2, 1).reshape(-1, 2)

    def projected_reach(self, direction: np.ndarray) -> np.ndarray:
        """Per chamber, how far its projected outline reaches along a unit 2-D ``direction``."""
        covariance = np.linalg.inv(self.forms)[:, :2, :2]
        return self.centres[:, :2] @ direction + np.sqrt(direction @ covariance @ direction)

    def covers(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Which points (x, y) lie inside the silhouette of any chamber."""
        inside = np.zeros(np.broadcast(x, y).shape, bool)
        for (cx, cy, _), form in zip(self.centres, self.forms, strict=True):
            dx, dy = x - cx, y - cy
            b = form[0, 2] * dx + form[1, 2] * dy
            c = form[0, 0] * dx * dx + 2 * form[0, 1] * dx * dy + form[1, 1] * dy * dy - 1
            inside |= b * b >= form[2, 2] * c
        return inside

    def silhouette_points(self, grid: int) -> np.ndarray:
        """Points (M, 2) of a ``grid`` × ``grid`` raster over the bounding box inside the
        silhouette."""
        extents = self.extents()
        low = (self.centres[:, :2] - extents[:, :2]).min(axis=0)
        high = (self.centres[:, :2] + extents[:, :2]).max(axis=0)
        x = np.linspace(low[0], high[0], grid)[None, :]
        y = np.linspace(low[1], high[1], grid)[:, None]
        rows, cols = np.nonzero(self.covers(x, y))
        return np.stack([x[0, cols], y[rows, 0]], axis=1)

    @staticmethod
    def concatenate(parts: list[Chambers]) -> Chambers:
        return Chambers(
            np.concatenate([p.centres for p in parts]),
            np.concatenate([p.forms for p in parts]),
            np.concatenate([p.albedo for p in parts]),
        )


@dataclass(frozen=True)
class Cut:
    """A broken edge: points with ``(p - origin)·normal + jag(p) > 0`` are gone.

    ``jag`` is a sum of sinusoids along the edge so the break looks rough, not ruled.
    """

    origin: np.ndarray
    normal: np.ndarray
    amplitudes: np.ndarray
    frequencies: np.ndarray
    phases: np.ndarray

    def keeps(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        along = (x - self.origin[0]) * -self.normal[1] + (y - self.origin[1]) * self.normal[0]
        across = (x - self.origin[0]) * self.normal[0] + (y - self.origin[1]) * self.normal[1]
        jag = sum(
            a * np.sin(f * along + p)
            for a, f, p in zip(self.amplitudes, self.frequencies, self.phases, strict=True)
        )
        return across + jag <= 0


@dataclass(frozen=True)
class Particle:
    """A posed test: its chambers and the cuts that make it a fragment (none for whole tests)."""

    chambers: Chambers
    cuts: tuple[Cut, ...] = ()

    def keeps(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Which points (x, y) of the silhouette survive the cuts."""
        kept = np.ones(np.broadcast(x, y).shape, bool)
        for cut in self.cuts:
            kept = kept & cut.keeps(x, y)
        return kept


def _ellipsoid_forms(semi_axes: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """Quadratic forms of ellipsoids with ``semi_axes`` (N, 3) turned by ``yaw`` about z."""
    rotation = np.zeros((len(yaw), 3, 3))
    cos, sin = np.cos(yaw), np.sin(yaw)
    rotation[:, 0, 0], rotation[:, 0, 1] = cos, -sin
    rotation[:, 1, 0], rotation[:, 1, 1] = sin, cos
    rotation[:, 2, 2] = 1.0
    inverse_squares = np.zeros((len(yaw), 3, 3))
    idx = np.arange(3)
    inverse_squares[:, idx, idx] = 1.0 / np.asarray(semi_axes) ** 2
    return rotation @ inverse_squares @ rotation.transpose(0, 2, 1)


def _albedo(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.uniform(0.85, 1.08, n)


def _spiral(
    rng: np.random.Generator,
    *,
    per_whorl: float,
    n_chambers: int,
    expansion_per_whorl: float,
    centre_at: float,
    radial: float,
    tangential: float,
    inflation: float,
    spire: float,
) -> Chambers:
    """Chambers along a logarithmic spiral; ``spire`` > 0 lifts older chambers (trochospire).

    Sizes are fractions of the spiral's distance d from the coiling axis at each chamber:
    the chamber centre sits at ``centre_at``·d, with semi-axes ``radial``·d across the whorl
    and ``tangential``·d along it, and height ``inflation`` times its radial semi-axis.
    """
    step = 2 * np.pi / per_whorl
    index = np.arange(n_chambers)
    growth = expansion_per_whorl ** (1 / per_whorl)
    distance = growth ** (index - (n_chambers - 1))  # the last chamber's d = 1
    angle = step * index + rng.normal(0, 0.04, n_chambers)
    jitter = rng.uniform(0.93, 1.07, (n_chambers, 2))
    semi_axes = np.stack(
        [
            radial * distance * jitter[:, 0],
            tangential * distance * jitter[:, 1],
            inflation * radial * distance,
        ],
        axis=1,
    )
    centres = np.stack(
        [
            centre_at * distance * np.cos(angle),
            centre_at * distance * np.sin(angle),
            spire * (1 - distance),
        ],
        axis=1,
    )
    forms = _ellipsoid_forms(semi_axes, angle)
    return Chambers(centres, forms, _albedo(rng, n_chambers))


def trochospiral(rng: np.random.Generator) -> Chambers:
    """Globigerina-like: few inflated chambers per whorl on a low cone."""
    per_whorl = rng.uniform(3.3, 4.8)
    size = rng.uniform(0.75, 0.95)
    return _spiral(
        rng,
        per_whorl=per_whorl,
        n_chambers=round(per_whorl * rng.uniform(2.2, 3.0)),
        expansion_per_whorl=rng.uniform(2.2, 3.2),
        centre_at=1.0,
        radial=size * rng.uniform(0.85, 1.0),
        tangential=size * rng.uniform(0.95, 1.15),
        inflation=rng.uniform(0.8, 1.0),
        spire=rng.uniform(0.3, 0.8),
    )


def planispiral(rng: np.random.Generator) -> Chambers:
    """Elphidium/Cibicides-like: many narrow chambers on a flat, involute spiral, lens-shaped."""
    per_whorl = rng.uniform(6.0, 11.0)
    chambers = _spiral(
        rng,
        per_whorl=per_whorl,
        n_chambers=round(per_whorl * rng.uniform(1.3, 1.8)),
        expansion_per_whorl=rng.uniform(1.8, 2.5),
        centre_at=rng.uniform(0.62, 0.7),
        radial=rng.uniform(0.4, 0.5),
        tangential=2 * np.pi / per_whorl * rng.uniform(0.75, 0.95),
        inflation=rng.uniform(0.4, 0.65),
        spire=0.0,
    )
    # Involute coiling: the last whorl wraps a central boss that hides the inner whorls.
    inner = np.linalg.norm(chambers.centres[-1, :2]) * rng.uniform(0.6, 0.75)
    boss_height = chambers.extents()[-1, 2] * rng.uniform(0.8, 1.0)
    boss = Chambers(
        np.zeros((1, 3)),
        _ellipsoid_forms(np.array([[inner, inner, boss_height]]), np.zeros(1)),
        _albedo(rng, 1),
    )
    return Chambers.concatenate([chambers, boss])


def biserial(rng: np.random.Generator) -> Chambers:
    """Bolivina-like: compressed chambers alternating in two rows, tapering to the start."""
    n = int(rng.integers(16, 29))
    growth = rng.uniform(1.035, 1.07)
    size = growth ** (np.arange(n) - (n - 1))
    width = size * rng.uniform(0.6, 0.8)  # across the axis
    length = size * rng.uniform(0.4, 0.5)  # along the axis
    height = size * rng.uniform(0.3, 0.4)  # compressed test
    side = np.where(np.arange(n) % 2 == 0, 1.0, -1.0)
    y = np.cumsum(np.r_[0.0, 0.6 * (length[1:] + length[:-1]) / 2])
    x = side * width * rng.uniform(0.2, 0.3)
    slant = side * rng.uniform(0.15, 0.35)  # chevron-shaped sutures
    centres = np.stack([x, y - y[-1], np.zeros(n)], axis=1)
    forms = _ellipsoid_forms(np.stack([width, length, height], axis=1), slant)
    return Chambers(centres, forms, _albedo(rng, n))


def uniserial(rng: np.random.Generator) -> Chambers:
    """Nodosaria/Dentalina-like: a straight or gently curved row of chambers with a neck."""
    n = int(rng.integers(3, 8))
    growth = rng.uniform(1.0, 1.15)
    radius = growth ** (np.arange(n) - (n - 1)) * rng.uniform(0.95, 1.05, n)
    elongation = rng.uniform(1.0, 1.4)
    half_length = radius * elongation
    bend = rng.normal(0, 0.12)  # radians per chamber
    heading = bend * np.arange(n)
    step = 0.8 * (half_length[1:] + half_length[:-1])
    x = np.cumsum(np.r_[0.0, step * np.cos(heading[1:])])
    y = np.cumsum(np.r_[0.0, step * np.sin(heading[1:])])
    neck_at = np.array([x[-1], y[-1]]) + half_length[-1] * np.array(
        [np.cos(heading[-1]), np.sin(heading[-1])]
    )
    centres = np.concatenate([np.stack([x, y, np.zeros(n)], axis=1), [[*neck_at, 0.0]]], axis=0)
    semi_axes = np.concatenate(
        [np.stack([half_length, radius, radius], axis=1), [[0.35, 0.28, 0.28]]], axis=0
    )
    forms = _ellipsoid_forms(semi_axes, np.r_[heading, heading[-1]])
    centres[:, :2] -= centres[:, :2].mean(axis=0)
    return Chambers(centres, forms, _albedo(rng, n + 1))


def spherical(rng: np.random.Generator) -> Chambers:
    """Orbulina-like: one spherical final chamber, slightly out of round."""
    semi_axes = np.array([[1.0, rng.uniform(0.94, 1.0), rng.uniform(0.92, 1.0)]])
    forms = _ellipsoid_forms(semi_axes, rng.uniform(0, np.pi, 1))
    return Chambers(np.zeros((1, 3)), forms, _albedo(rng, 1))


_BUILDERS = {
    "trochospiral": trochospiral,
    "planispiral": planispiral,
    "biserial": biserial,
    "uniserial": uniserial,
    "spherical": spherical,
}


def rotation_matrix(yaw: float, tilt: float, spin: float) -> np.ndarray:
    """Rotation: ``spin`` about z, then ``tilt`` about x, then ``yaw`` about z (radians)."""

    def about_z(a):
        c, s = np.cos(a), np.sin(a)
        return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])

    c, s = np.cos(tilt), np.sin(tilt)
    about_x = np.array([[1.0, 0, 0], [0, c, -s], [0, s, c]])
    return about_z(yaw) @ about_x @ about_z(spin)


def _pose(morphotype: str, rng: np.random.Generator) -> np.ndarray:
    """A random view: how a specimen of this shape comes to rest on a tray, seen from above."""
    yaw = rng.uniform(0, 2 * np.pi)
    spin = rng.uniform(0, 2 * np.pi)
    if morphotype == "trochospiral":  # spiral side, umbilical side or edge-on
        view = rng.choice([0.0, np.pi, np.pi / 2], p=[0.4, 0.4, 0.2])
        tilt = view + rng.normal(0, 0.3)
    elif morphotype == "planispiral":  # lies on a side, sometimes propped up
        tilt = rng.choice([0.0, np.pi]) + rng.uniform(-0.7, 0.7)
    elif morphotype in ("biserial", "uniserial"):  # lies along its axis
        spin = rng.choice([0.0, np.pi]) + rng.normal(0, 0.1)
        tilt = rng.uniform(-0.6, 0.6)
        return rotation_matrix(yaw, 0.0, 0.0) @ rotation_matrix(np.pi / 2, tilt, -np.pi / 2)
    else:
        tilt = rng.uniform(0, np.pi)
    return rotation_matrix(yaw, tilt, spin)


def whole_particle(morphotype: str, rng: np.random.Generator) -> Chambers:
    """A whole test of ``morphotype`` in a random pose, centred near the origin."""
    chambers = _BUILDERS[morphotype](rng).rotated(_pose(morphotype, rng))
    return chambers.shifted(-chambers.centres.mean(axis=0))


def _fragment(rng: np.random.Generator) -> Particle:
    """A broken test: a whole one cut by one or two rough edges, each keeping 35–70 % of it."""
    source = rng.choice(WHOLE_MORPHOTYPES, p=[0.3, 0.25, 0.15, 0.1, 0.2])
    chambers = whole_particle(str(source), rng)
    area = chambers.silhouette_points(48)
    cuts = []
    for _ in range(1 if rng.random() < 0.7 else 2):
        angle = rng.uniform(0, 2 * np.pi)
        normal = np.array([np.cos(angle), np.sin(angle)])
        reach = area[Particle(chambers, tuple(cuts)).keeps(*area.T)] @ normal
        offset = np.quantile(reach, rng.uniform(0.35, 0.7))
        size = reach.max() - reach.min()
        n_waves = 4
        cuts.append(
            Cut(
                origin=normal * offset,
                normal=normal,
                amplitudes=size * rng.uniform(0.005, 0.03, n_waves),
                frequencies=rng.uniform(4, 25, n_waves) / size,
                phases=rng.uniform(0, 2 * np.pi, n_waves),
            )
        )
    return Particle(chambers, tuple(cuts))


def _double(rng: np.random.Generator) -> Particle:
    """Two whole tests touching: often the same morphotype, as in a real sample."""
    first = str(rng.choice(WHOLE_MORPHOTYPES))
    second = first if rng.random() < 0.5 else str(rng.choice(WHOLE_MORPHOTYPES))
    a = whole_particle(first, rng)
    b = whole_particle(second, rng)
    size_ratio = rng.uniform(0.6, 1.0)
    b = Chambers(b.centres * size_ratio, b.forms / size_ratio**2, b.albedo)
    angle = rng.uniform(0, 2 * np.pi)
    direction = np.array([np.cos(angle), np.sin(angle)])
    # Touch where the two outlines reach furthest towards each other, overlapping slightly.
    reach_a = a.projected_reach(direction)
    reach_b = b.projected_reach(-direction)
    i, j = int(np.argmax(reach_a)), int(np.argmax(reach_b))
    gap = reach_a[i] + reach_b[j] - 0.15 * (reach_a[i] - a.centres[i, :2] @ direction)
    across = np.array([-direction[1], direction[0]])
    lateral = (a.centres[i, :2] - b.centres[j, :2]) @ across
    shift = direction * gap + across * lateral
    # Rest both on the tray: align the lowest points of the two tests.
    floor_a = np.min(a.centres[:, 2] - a.extents()[:, 2])
    floor_b = np.min(b.centres[:, 2] - b.extents()[:, 2])
    b = b.shifted([shift[0], shift[1], floor_a - floor_b])
    both = Chambers.concatenate([a, b])
    return Particle(both.shifted(-both.centres.mean(axis=0)))


def make_particle(morphotype: str, rng: np.random.Generator) -> Particle:
    """A random posed particle of ``morphotype`` (one of :data:`MORPHOTYPES`)."""
    if morphotype == "fragment":
        return _fragment(rng)
    if morphotype == "double":
        return _double(rng)
    if morphotype not in _BUILDERS:
        raise InvalidInput(f"unknown morphotype {morphotype!r}; expected one of {MORPHOTYPES}")
    return Particle(whole_particle(morphotype, rng))
