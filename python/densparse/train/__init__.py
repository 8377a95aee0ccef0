"""Fine-tuning embedding models and cross-encoder rerankers: training data, hard-negative
mining (torch-free), and the trainer (needs ``densparse[train]``; rerankers:
``TrainConfig(kind="reranker")``, :mod:`densparse.train.reranker`).

``import densparse.train`` never imports torch: import the submodules you need, e.g.
``from densparse.train.mining import mine_hard_negatives`` or
``from densparse.train.data import read_jsonl, write_jsonl``. The torch-using names
(``info_nce``, ``group_cross_entropy``, ``TrainConfig``, ``Trainer``, ``TrainResult``,
``finetune``) are reachable as ``densparse.train.<name>`` too and import torch only when first
touched.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "info_nce": ("densparse.train.loss", "info_nce"),
    "group_cross_entropy": ("densparse.train.loss", "group_cross_entropy"),
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
