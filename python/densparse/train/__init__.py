"""Fine-tuning embedding models (REFERENCE.md section 7).

``import densparse.train`` needs no torch: the torch-using modules (:mod:`densparse.train.loss`,
:mod:`densparse.train.trainer`) are imported on first use, so ``densparse.train.info_nce``
works but only loads torch when touched.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "info_nce": ("densparse.train.loss", "info_nce"),
    "TrainConfig": ("densparse.train.trainer", "TrainConfig"),
    "Trainer": ("densparse.train.trainer", "Trainer"),
    "TrainResult": ("densparse.train.trainer", "TrainResult"),
    "finetune": ("densparse.train.trainer", "finetune"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'densparse.train' has no attribute {name!r}")
