"""Review fixes in maskprep.masks (fit, templates, preview), each checked on real photos or the
bundled templates: printed patterns, degenerate landmarks, the preview sheet's edge cases."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from maskprep.masks.templates import _pattern


def _inner_components(mask: np.ndarray) -> list[int]:
    """Pixel areas of the connected blobs of ``mask`` that do not touch the image border."""
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    h, w = mask.shape
    return [int(stats[i, cv2.CC_STAT_AREA]) for i in range(1, n)
            if stats[i, 0] > 0 and stats[i, 1] > 0 and stats[i, 0] + stats[i, 2] < w
            and stats[i, 1] + stats[i, 3] < h]


@pytest.mark.parametrize("seed", range(6))
def test_dots_are_whole_discs_whatever_the_phase(seed):
    """The staggered dot columns follow the random phase: no dot is cut into two shifted halves."""
    color = np.array([40.0, 40.0, 40.0], np.float32)
    flat = _pattern("dots", (240, 320), color, 1.0, np.random.default_rng(seed))
    areas = _inner_components(flat[..., 0] > 128)
    assert len(areas) > 50
    assert max(areas) <= 1.25 * min(areas), sorted(set(areas))
