"""``export_model``: a Hugging Face checkpoint directory -> a densparse ONNX model directory."""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

from densparse.export import check as C
from densparse.export import convert
from densparse.export._deps import require_all
from densparse.export.files import check_out_dir, copy_support_files, staging_dir, write_meta
from densparse.export.kinds import FAMILY, KINDS, check_source, detect_kind

log = logging.getLogger("densparse.export")

ONNX_NAME = "model.onnx"


@dataclass
class ExportReport:
    """What :func:`export_model` wrote and how closely it matches torch.

    Attributes:
        out_dir: the exported model directory (load it with ``densparse.Encoder.from_pretrained``).
        onnx_path: its ONNX graph (``out_dir / "model.onnx"``).
        kind: ``"bge"``, ``"m3"``, ``"splade"`` or ``"st"``.
        outputs: the graph's output names.
        max_abs_diff: per output, the largest absolute difference between onnxruntime and the
            torch forward pass on the check samples (real token positions only); empty when
            ``check=False``.
        inputs: the graph's input names.
        precision: ``"fp32"``, ``"fp16"`` or ``"int8"``.
        optimized: whether onnxruntime's transformer optimizer was applied.
        external_data: whether the weights are in ``model.onnx.data`` next to the graph.
        min_cosine, mean_cosine: per output, the smallest / mean cosine between an ONNX row
            (a token's vector, or a text's for per-text outputs) and its torch row.
        fusions: operators fused by the optimizer (``optimize=True``).
        seconds: wall time of the export.
    """

    out_dir: Path
    onnx_path: Path
    kind: str
    outputs: list[str]
    max_abs_diff: dict[str, float]
    inputs: list[str] = field(default_factory=list)
    precision: str = "fp32"
    optimized: bool = False
    external_data: bool = False
    min_cosine: dict[str, float] = field(default_factory=dict)
    mean_cosine: dict[str, float] = field(default_factory=dict)
    fusions: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> str:
        """Human-readable lines (the CLI prints them)."""
        lines = [
            f"exported {self.kind} ({self.precision}{', optimized' if self.optimized else ''}) "
            f"-> {self.onnx_path}" + (" + external data" if self.external_data else ""),
            f"  inputs:  {', '.join(self.inputs)}",
            f"  outputs: {', '.join(self.outputs)}",
        ]
        if self.max_abs_diff:
            for name, d in self.max_abs_diff.items():
                cos, mean = self.min_cosine.get(name), self.mean_cosine.get(name)
                extra = (
                    f"  (row cosine min {cos:.6f}, mean {mean:.6f})"
                    if cos is not None and mean is not None
                    else ""
                )
                lines.append(f"  max |onnx - torch| {name}: {d:.3g}{extra}")
        else:
            lines.append("  not checked against torch (check=False)")
        lines.append(f"  {self.seconds:.1f}s")
        return "\n".join(lines)


def _pad_id(tokenizer_path: Path, config) -> int:
    from densparse.models.batching import find_pad_id, load_tokenizer

    return find_pad_id(
        load_tokenizer(tokenizer_path), int(getattr(config, "pad_token_id", None) or 0)
    )


def _step(show: bool, msg: str) -> None:
    if show:
        print(f"densparse export: {msg}", file=sys.stderr, flush=True)
    else:
        log.info(msg)


def _check_loads(out: Path, family: Optional[str]) -> None:
    """The written directory loads with the class users will use (a Reranker when
    ``family`` is None, else an Encoder of that family) and runs once."""
    if family is None:
        from densparse.models.reranker import Reranker

        Reranker.from_pretrained(out, provider="cpu", threads=1).score_pairs([C.SAMPLE_PAIRS[0]])
        return
    from densparse.models.encoder import Encoder

    enc = Encoder.from_pretrained(out, provider="cpu", threads=1)
    enc.encode([C.SAMPLE_TEXTS[0]])
    if enc.family != family:
        raise C.ExportCheckError(
            f"the exported directory loads as family {enc.family!r}, not {family!r}"
        )


def export_model(
    model_dir: Union[str, os.PathLike],
    out_dir: Union[str, os.PathLike],
    kind: Optional[str] = None,
    *,
    fp16: bool = False,
    int8: bool = False,
    optimize: bool = False,
    opset: int = 17,
    check: bool = True,
    show_progress: Optional[bool] = None,
    overwrite: bool = False,
    external_data_threshold: Optional[int] = None,
) -> ExportReport:
    """Export a BGE / BGE-M3 / SPLADE / sentence-transformers / cross-encoder checkpoint to ONNX.

    Args:
        model_dir: a local Hugging Face checkpoint directory (config.json + weights +
            tokenizer files; sentence-transformers layout; BGE-M3 with ``sparse_linear.pt``
            and ``colbert_linear.pt``).
        out_dir: the directory to write; it must not exist unless ``overwrite=True``. It is
            built in a temporary directory next to it and renamed into place at the end, so a
            failed export leaves nothing behind and never damages an existing ``out_dir``.
        kind: ``"bge"`` (output ``last_hidden_state``), ``"st"`` (``last_hidden_state``,
            pooling per 1_Pooling), ``"splade"`` (``logits``), ``"m3"`` (``dense``,
            ``sparse``, ``colbert``, ``last_hidden_state``), ``"reranker"`` (a one-label
            sequence classifier, ``logits`` [batch, 1], loaded by ``densparse.Reranker``), or
            ``None`` to detect it.
        fp16: float16 weights and compute (inputs int64, outputs float32). Meant for GPUs.
        int8: dynamic int8 quantisation of the weights (meant for CPUs). Not with ``fp16``.
        optimize: apply onnxruntime's transformer optimizer (fused ops; onnxruntime only).
        opset: ONNX opset (>= 14).
        check: run the exported graph with onnxruntime on sample inputs (a padded batch and
            single texts) and compare every output with the torch forward pass; raises
            :class:`~densparse.export.check.ExportCheckError` past the tolerance (see
            :mod:`densparse.export.check`). The directory is also loaded once by
            ``densparse.Encoder``.
        show_progress: print each step on stderr (``None``: when stderr is a terminal).
        overwrite: replace an existing ``out_dir``.
        external_data_threshold: initializer bytes above which the weights go to
            ``model.onnx.data`` (default :data:`~densparse.export.convert.EXTERNAL_DATA_THRESHOLD`,
            just under protobuf's 2 GiB limit).

    Returns:
        An :class:`ExportReport`.

    Raises:
        ImportError: torch / transformers / onnx missing (``pip install "densparse[export]"``).
        FileNotFoundError: ``model_dir`` does not exist, or BGE-M3 head files are missing.
        FileExistsError: ``out_dir`` exists and ``overwrite`` is false.
        ValueError: not a model directory, unknown kind, bad options, weights that do not load.
    """
    t0 = time.perf_counter()
    model_dir = Path(model_dir).expanduser()
    out_dir = Path(out_dir).expanduser()
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS} or None, got {kind!r}")
    if fp16 and int8:
        raise ValueError("choose at most one of fp16 and int8")
    if not isinstance(opset, int) or isinstance(opset, bool) or not 14 <= opset <= 23:
        raise ValueError(f"opset must be an int in [14, 23], got {opset!r}")
    if external_data_threshold is not None and external_data_threshold < 0:
        raise ValueError("external_data_threshold must be >= 0")
    tdir = check_source(model_dir, kind)
    if out_dir.resolve() == model_dir.resolve():
        raise ValueError("out_dir must differ from model_dir")
    check_out_dir(out_dir, overwrite)
    if kind is None:
        kind = detect_kind(model_dir)
        tdir = check_source(model_dir, kind)
        log.info("detected kind %s", kind)
    require_all()
    show = sys.stderr.isatty() if show_progress is None else bool(show_progress)
    precision = "fp16" if fp16 else "int8" if int8 else "fp32"

    from densparse.export import load
    from densparse.export import optimize as O
    from densparse.export import wrappers as W
    from densparse.models.families import detect_family

    # language (BGE's query instruction) from the source's names; the rest is re-read from
    # the staged directory below, i.e. from exactly the files the Encoder will see
    reranker = kind == "reranker"
    src_spec = None if reranker else detect_family(model_dir, family=FAMILY[kind])
    _step(show, f"loading the {kind} model from {tdir}")
    model = load.load_transformer(tdir, kind)
    config = model.config
    if kind == "m3":
        sparse, colbert = load.load_m3_heads(model_dir, config.hidden_size)
        wrapper = W.M3Outputs(model, sparse, colbert)
    elif kind == "splade":
        wrapper = W.MaskedLMLogits(model)
    elif reranker:
        if int(getattr(config, "num_labels", 1)) != 1:  # transformers 5 may omit id2label
            raise ValueError(
                f"{tdir} is a sequence classifier with {config.num_labels} labels; a reranker "
                "scores with exactly one logit (num_labels=1)"
            )
        wrapper = W.SequenceLogits(model)
    else:
        wrapper = W.HiddenStates(model)
    wrapper.eval()
    inputs = ["input_ids", "attention_mask"]
    if kind != "m3" and int(getattr(config, "type_vocab_size", 0) or 0) >= 2:
        inputs.append("token_type_ids")  # the Encoder feeds zeros, as BGE expects
    outputs = list(wrapper.output_names)
    per_text = ("logits",) if reranker else C.PER_TEXT

    with staging_dir(out_dir, overwrite) as tmp:
        copied = copy_support_files(model_dir, tdir, tmp, kind)
        log.info("copied %s", ", ".join(copied))
        pad_id = _pad_id(tmp / "tokenizer.json", config)
        if reranker:
            from densparse.models.reranker import reranker_max_length

            max_length = reranker_max_length(tmp)
        else:
            spec = detect_family(tmp, family=FAMILY[kind]).with_(
                language=src_spec.language, query_instruction=src_spec.query_instruction
            )
            max_length = spec.max_length
        work = tmp / ".work"
        work.mkdir()
        raw = work / "raw.onnx"
        _step(show, f"tracing to ONNX (opset {opset})")
        args = convert.dummy_inputs(inputs, int(config.vocab_size), pad_id)
        convert.torch_to_onnx(
            wrapper, inputs, outputs, W.dynamic_axes(outputs, inputs, per_text), args, raw, opset
        )
        current, fusions = raw, {}
        threshold = external_data_threshold
        if optimize:
            _step(show, "optimising with onnxruntime.transformers")
            nxt = work / "opt.onnx"
            fusions = O.optimize(
                current, nxt, int(config.num_attention_heads), int(config.hidden_size), threshold
            )
            current = nxt
        if fp16:
            _step(show, "converting to float16")
            nxt = work / "fp16.onnx"
            O.to_fp16(current, nxt, threshold)
            current = nxt
        if int8:
            _step(show, "quantising to int8 (dynamic)")
            nxt = work / "int8.onnx"
            O.to_int8(current, nxt, threshold)
            current = nxt
        onnx_path = tmp / ONNX_NAME
        external = convert.save_graph(convert.load_graph(current), onnx_path, threshold)
        shutil.rmtree(work)
        meta = {"max_length": max_length}
        if not reranker:
            meta.update(
                family=spec.family,
                pooling=spec.pooling,
                query_instruction=spec.query_instruction or "",
            )
            if spec.language:
                meta["language"] = spec.language
        meta.update(
            kind=kind,
            outputs=outputs,
            precision=precision,
            optimized=bool(optimize),
            source=str(model_dir.resolve()),
        )
        write_meta(tmp, meta)
        diffs, cosines, mean_cos = {}, {}, {}
        if check:
            _step(show, "checking the ONNX graph against torch")
            batches = C.sample_batches(tmp / "tokenizer.json", max_length, pad_id, reranker)
            diffs, cosines, mean_cos = C.compare(
                wrapper, onnx_path, inputs, outputs, batches, precision, per_text
            )
            _check_loads(tmp, None if reranker else spec.family)
    final = out_dir / ONNX_NAME
    report = ExportReport(
        out_dir=out_dir,
        onnx_path=final,
        kind=kind,
        outputs=outputs,
        max_abs_diff=diffs,
        inputs=inputs,
        precision=precision,
        optimized=bool(optimize),
        external_data=external,
        min_cosine=cosines,
        mean_cosine=mean_cos,
        fusions=fusions,
        seconds=time.perf_counter() - t0,
    )
    log.info(report.summary())
    return report
