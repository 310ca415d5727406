"""maskprep: prepare face-mask image datasets and tell the truth about them.

Stages (each a library function and a ``maskprep`` sub-command): detect faces, synthesise masks,
augment, audit. The classifier lives in the sibling package ``maskprep_train``.
"""
import os as _os

# albumentations asks PyPI for a newer version on import unless told not to; these machines are offline.
_os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.1.0"
