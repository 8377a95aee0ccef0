"""Export Hugging Face checkpoints (BGE, BGE-M3, SPLADE, sentence-transformers) to ONNX
directories that :class:`densparse.Encoder` loads.

Needs the ``export`` extra (torch, transformers, onnx), imported only when
:func:`export_model` runs: ``import densparse.export`` itself stays torch-free.

Modules, one concept each:

- :mod:`~densparse.export.kinds`: the kinds, their detection, validation of the input directory.
- :mod:`~densparse.export.load`: loading the torch model (and BGE-M3 heads), weight verification.
- :mod:`~densparse.export.wrappers`: torch modules with the graph's named outputs.
- :mod:`~densparse.export.convert`: tracing to ONNX, external data.
- :mod:`~densparse.export.optimize`: onnxruntime optimizer, float16, dynamic int8.
- :mod:`~densparse.export.check`: the comparison with the torch forward pass.
- :mod:`~densparse.export.files`: tokenizer / config files, densparse.json, atomic output.
- :mod:`~densparse.export.api`: :func:`export_model` and :class:`ExportReport`.
"""

from densparse.export.api import ExportReport, export_model
from densparse.export.check import ExportCheckError
from densparse.export.kinds import KINDS, detect_kind

__all__ = ["KINDS", "ExportCheckError", "ExportReport", "detect_kind", "export_model"]
