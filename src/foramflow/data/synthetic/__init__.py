"""Synthetic foraminifera with known truth, for the demo and for testing every stage.

Real foram image sets cannot be shipped, so foramflow draws its own: procedural tests of
several morphotypes (chambers on a rising or flat spiral, in two rows or one, one big
sphere, plus fragments and touching doubles), shaded under a ring light, bright on a dark
tray, in random poses and sizes; crops, tray slides, Z-stacks and a whole core whose
down-core assemblages are known. Everything is deterministic for a seed.
"""

from foramflow.data.synthetic.core import (
    HUMAN_COUNTS_FILE,
    TRUTH_ABUNDANCE_FILE,
    TRUTH_PARTICLES_FILE,
    CoreTruth,
    climate_index,
    make_core,
    true_abundance,
)
from foramflow.data.synthetic.particles import render_particle
from foramflow.data.synthetic.shapes import MORPHOTYPES
from foramflow.data.synthetic.slides import DIAMETER_UM, Slide, make_slide, save_slide
from foramflow.data.synthetic.stacks import ZStack, make_zstack, save_zstack
from foramflow.data.synthetic.training import write_training_set

__all__ = [
    "DIAMETER_UM",
    "HUMAN_COUNTS_FILE",
    "MORPHOTYPES",
    "TRUTH_ABUNDANCE_FILE",
    "TRUTH_PARTICLES_FILE",
    "CoreTruth",
    "Slide",
    "ZStack",
    "climate_index",
    "make_core",
    "make_slide",
    "make_zstack",
    "render_particle",
    "save_slide",
    "save_zstack",
    "true_abundance",
    "write_training_set",
]
