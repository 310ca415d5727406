"""maskprep-train: fine-tune a ResNet on a face-mask dataset and report how well it generalises.

Library first: :func:`maskprep_train.engine.fit` with a :class:`~maskprep_train.engine.TrainConfig`
does what ``maskprep-train DATA`` does; :func:`~maskprep_train.engine.evaluate` and
:func:`~maskprep_train.engine.predict` use a saved ``best.pt``.
"""
from __future__ import annotations

__all__ = ["TrainConfig", "fit", "evaluate", "predict"]


def __getattr__(name: str):
    # Lazy: importing the package (e.g. for --help) must not pay for importing torch.
    if name in __all__:
        from maskprep_train import engine
        return getattr(engine, name)
    raise AttributeError(name)
