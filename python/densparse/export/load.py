"""Load the torch model of a checkpoint, per kind, and prove its weights really loaded.

transformers renames old checkpoint keys (LayerNorm ``gamma``/``beta`` -> ``weight``/``bias``)
while loading; :func:`verify_weights` re-reads every safetensors tensor, applies the same
renames, and checks the loaded parameters hold exactly those values, so a silently
re-initialised layer fails the export instead of producing a random graph.
"""

from __future__ import annotations

import logging
from pathlib import Path

from densparse.export._deps import require
from densparse.export.kinds import M3_HEADS

log = logging.getLogger("densparse.export")

#: Checkpoint keys a model may leave unused without harm.
_HARMLESS_UNEXPECTED = ("pooler.", "position_ids", "cls.seq_relationship", "lm_head.", "cls.")
_RENAMES = ((".gamma", ".weight"), (".beta", ".bias"))


def _renamed(key: str) -> str:
    for old, new in _RENAMES:
        if key.endswith(old):
            return key[: -len(old)] + new
    return key


def verify_weights(model, tdir: Path) -> int:
    """Compare every tensor of ``tdir``'s safetensors file(s) with the loaded parameter of the
    same (renamed) name; returns how many were compared. Raises ValueError on a mismatch or
    when a checkpoint tensor maps to no parameter while the model has one of that shape."""
    torch = require("torch")
    files = sorted(tdir.glob("*.safetensors"))
    if not files:
        return 0
    from safetensors import safe_open

    state = model.state_dict()
    prefix = getattr(model, "base_model_prefix", "") or ""
    compared = 0
    for f in files:
        with safe_open(str(f), framework="pt") as sf:
            for key in sf.keys():  # noqa: SIM118 - safe_open is not a dict
                name = _renamed(key)
                cands = [name, f"{prefix}.{name}"]
                if prefix and name.startswith(prefix + "."):
                    cands.append(name[len(prefix) + 1 :])
                target = next((c for c in cands if c in state), None)
                if target is None:
                    continue
                want = sf.get_tensor(key).to(state[target].dtype)
                if want.shape != state[target].shape or not torch.equal(want, state[target]):
                    raise ValueError(
                        f"{f}: tensor {key} did not load into {target} (values differ after "
                        "loading); the export would not be faithful"
                    )
                compared += 1
    if compared == 0:
        raise ValueError(f"none of the tensors in {tdir} matched a parameter of the model")
    return compared


def _check_loading_info(info: dict, tdir: Path) -> None:
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        raise ValueError(
            f"{tdir}: weights missing from the checkpoint (they would be random): "
            f"{', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}"
        )
    mism = info.get("mismatched_keys") or []
    if mism:
        raise ValueError(f"{tdir}: weights with mismatched shapes: {list(mism)[:10]}")
    odd = [
        k
        for k in info.get("unexpected_keys") or []
        if not any(h in k for h in _HARMLESS_UNEXPECTED)
    ]
    if odd:
        raise ValueError(f"{tdir}: checkpoint tensors the model does not use: {sorted(odd)[:10]}")


def load_transformer(tdir: Path, kind: str, attn_implementation: str = "eager"):
    """The torch model for ``kind`` (eval mode, float32). Eager attention traces to the
    MatMul/Softmax pattern onnxruntime's optimizer fuses into its Attention op."""
    torch = require("torch")
    transformers = require("transformers")
    cls = {
        "splade": transformers.AutoModelForMaskedLM,
        "reranker": transformers.AutoModelForSequenceClassification,
    }.get(kind, transformers.AutoModel)
    kwargs = {
        "dtype": torch.float32,
        "output_loading_info": True,
        "attn_implementation": attn_implementation,
    }
    config = transformers.AutoConfig.from_pretrained(str(tdir))
    if kind not in ("splade", "reranker") and config.model_type in (
        "bert",
        "roberta",
        "xlm-roberta",
    ):
        kwargs["add_pooling_layer"] = False
    tl = transformers.utils.logging
    level, bars = tl.get_verbosity(), tl.is_progress_bar_enabled()
    tl.set_verbosity_error()  # the load report is checked below instead
    tl.disable_progress_bar()
    try:
        try:
            model, info = cls.from_pretrained(str(tdir), **kwargs)
        except TypeError:  # older transformers: torch_dtype
            kwargs["torch_dtype"] = kwargs.pop("dtype")
            model, info = cls.from_pretrained(str(tdir), **kwargs)
    finally:
        tl.set_verbosity(level)
        if bars:
            tl.enable_progress_bar()
    _check_loading_info(info, tdir)
    n = verify_weights(model, tdir)
    log.info("loaded %s from %s (%d tensors verified)", type(model).__name__, tdir, n)
    return model.eval()


def load_m3_heads(model_dir: Path, hidden: int):
    """FlagEmbedding's ``sparse_linear.pt`` (Linear(hidden, 1)) and ``colbert_linear.pt``
    (Linear(hidden, d)) as torch Linear modules."""
    torch = require("torch")
    heads = []
    for name in M3_HEADS:
        path = model_dir / name
        try:
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as e:
            raise ValueError(f"cannot read {path} as a torch state dict: {e}") from e
        if not isinstance(sd, dict):
            raise ValueError(f"{path}: expected a state dict of a Linear layer")
        sd = {k.split(".")[-1]: v for k, v in sd.items()}
        if "weight" not in sd or sd["weight"].ndim != 2:
            raise ValueError(f"{path}: no 2-D 'weight' tensor (keys {sorted(sd)})")
        out_f, in_f = sd["weight"].shape
        if in_f != hidden:
            raise ValueError(f"{path}: expects hidden size {in_f}, the model has {hidden}")
        lin = torch.nn.Linear(in_f, out_f, bias="bias" in sd)
        lin.load_state_dict({k: v.float() for k, v in sd.items() if k in ("weight", "bias")})
        heads.append(lin.eval())
    sparse, colbert = heads
    if sparse.out_features != 1:
        raise ValueError(f"sparse_linear.pt must be Linear(hidden, 1), has {sparse.out_features}")
    return sparse, colbert
