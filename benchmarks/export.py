"""Exporting a fine-tuned SmolLM2: GGUF F16 and Q8_0 (and the hf and peft formats), with the
round trip each GGUF export runs — how many greedy continuations of its 8 code prompts come back
identical from the GGUF file — plus file sizes and times.

    ECHO_HOME=/tmp/export-bench python benchmarks/export.py              # ~5 minutes on 2 cores
    ECHO_HOME=/tmp/export-bench python benchmarks/export.py --checkpoint <registry>/<name>

Without --checkpoint it makes one: the embedded base (converted once under $ECHO_HOME/models) in a
LoRA (r=16 on q/k/v/o, as training makes) whose B matrices are seeded Gaussian noise of std
--lora-std instead of zeros, merged — a real delta without a training run. Each GGUF's round trip
also reports how many of the prompts' continuations the fine-tune changed against its base, and how
well the file agrees with that base: a file that lost the fine-tune would agree with the base.
Appends the figures to benchmarks/out/export.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from report import report


def make_checkpoint(base: Path, folder: Path, lora_std: float, seed: int = 0) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=["q_proj", "k_proj", "v_proj",
                                                                                "o_proj"]))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, lora_std)
    tokenizer = AutoTokenizer.from_pretrained(base)
    shutil.rmtree(folder, ignore_errors=True)
    model.save_pretrained(folder / "adapter")
    model.merge_and_unload().save_pretrained(folder / "merged")
    tokenizer.save_pretrained(folder / "merged")
    (folder / "echo_meta.json").write_text(json.dumps({
        "name": folder.name, "kind": "benchmark", "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "base_model": "smollm2-135m", "config": {"lora_std": lora_std, "seed": seed}}, indent=2))
    return folder


def main() -> None:
    from echo_dagster import env
    from echo_dagster.model import export as ex
    from echo_dagster.model.loading import EMBEDDED, resolve_folder

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=None, help="a checkpoint folder (merged/, adapter/)")
    parser.add_argument("--lora-std", type=float, default=0.01, help="std of the made checkpoint's LoRA B weights")
    parser.add_argument("--types", default="f16,q8_0")
    args = parser.parse_args()

    work = env.echo_home() / "export-bench"
    started = time.perf_counter()
    base = resolve_folder(EMBEDDED, env.models_cache())
    figures = {"base_ready_s": round(time.perf_counter() - started, 1)}
    if args.checkpoint is None:
        started = time.perf_counter()
        checkpoint = make_checkpoint(base, work / "bench-lora", args.lora_std)
        figures.update(made_checkpoint={"lora_std": args.lora_std, "seconds": round(time.perf_counter() - started, 1)})
    else:
        checkpoint = args.checkpoint
    figures["checkpoint"] = str(checkpoint)
    figures["exports"] = {}
    for fmt, gguf_type in [("hf", None), ("peft", None)] + [("gguf", t) for t in args.types.split(",")]:
        label = gguf_type or fmt
        out = work / f"out-{label}"
        for stale in (out, out.with_name(out.name + ".rejected")):
            shutil.rmtree(stale, ignore_errors=True)
        started = time.perf_counter()
        try:
            # The round trip's base: the one the checkpoint's echo_meta.json names.
            record = ex.export(checkpoint, fmt, out, gguf_type=gguf_type or "f16", models_dir=env.models_cache())
            error = None
        except ex.ExportError as err:
            record, error = json.loads((out.with_name(out.name + ".rejected") / "export.json").read_text()), str(err)
        row = {"seconds": round(time.perf_counter() - started, 1), "error": error}
        if fmt != "gguf":  # a GGUF export's files count its model twice: tabby/ggml/ is a hard link
            row["mb"] = round(sum(record["files"].values()) / 1e6, 1)
        if fmt == "gguf":
            trip = record["round_trip"]
            row.update(file_mb=round(record["gguf"]["bytes"] / 1e6, 1),
                       convert_s=record["gguf"]["convert_seconds"], round_trip_s=trip["seconds"],
                       identical=f"{trip['identical_sequences']}/{trip['prompts']}",
                       first_token=f"{trip['first_token']}/{trip['prompts']}", token_agreement=trip["token_agreement"],
                       tokenizer_identical=f"{trip['tokenizer_identical']}/{trip['prompts']}",
                       passed=trip["passed"], below=trip["below"], differing=trip["differing"],
                       fine_tune_changed=f"{trip['base']['fine_tune_changed']}/{trip['prompts']}",
                       identical_to_base=f"{trip['base']['identical_sequences']}/{trip['prompts']}",
                       token_agreement_with_base=trip["base"]["token_agreement"])
        figures["exports"][label] = row
    report("export", figures)


if __name__ == "__main__":
    main()
