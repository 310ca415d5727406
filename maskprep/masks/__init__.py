"""Synthetic face masks: templates (``templates``), fitting to landmarks (``fit``), warping and
blending (``render``), and the stage that runs them over a tree (``synth``)."""
from maskprep.masks.fit import WEAR_MODES, check_face, fit_grid
from maskprep.masks.render import composite
from maskprep.masks.templates import MASK_TYPES, PATTERNS, load_template

__all__ = ["MASK_TYPES", "PATTERNS", "WEAR_MODES", "check_face", "composite", "fit_grid",
           "load_template"]
