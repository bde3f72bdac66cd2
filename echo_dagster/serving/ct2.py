"""The CPU engine for one client at a time: CTranslate2 with int8 weights.

On this 2-core CPU it reads a 150-token prompt in about 0.17 s and writes a token in about 26 ms,
against 0.25 s and 55 ms for transformers in bf16 (docs/benchmarks.md#serving). Its batched
generation gives wrong tokens when prompts differ in length (docs/benchmarks.md#generation), so
requests decode one after another, each streaming as it goes; the same `Job`s as `Batcher`, the same
rules for what is sent and kept (`final_text`, `visible_text`).

A model is converted once (a minute for 135M parameters) into `<models_dir>/ct2/`, keyed by its
folder and the time its weights were written; the champion's follower converts a new checkpoint
while the previous one serves. LoRA is not applied at run time: checkpoints are served merged.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from echo_dagster.model.generation import prompt_ids
from echo_dagster.model.loading import LoadedModel, resolve_folder, split_spec
from echo_dagster.serving.batcher import DecodeThread, Job, final_text, finished, visible_text

QUANTIZATION = "int8"


def load(spec: str, models_dir: str | Path) -> LoadedModel:
    """The model of a spec (the embedded default, or a merged folder) as a CTranslate2 generator."""
    import ctranslate2
    from transformers import AutoTokenizer

    base, adapter = split_spec(spec)
    if adapter is not None:
        raise ValueError(f"{spec}: the ctranslate2 engine serves merged models only (a checkpoint's merged/)")
    folder = resolve_folder(base, models_dir)
    weights = max((p.stat().st_mtime_ns for p in folder.glob("*.safetensors")), default=0)
    key = hashlib.sha256(f"{folder.resolve()}:{weights}".encode()).hexdigest()[:16]
    converted = Path(models_dir) / "ct2" / f"{folder.name}-{key}-{QUANTIZATION}"
    if not (converted / "model.bin").is_file():
        partial = converted.with_name(converted.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        ctranslate2.converters.TransformersConverter(str(folder)).convert(str(partial), quantization=QUANTIZATION)
        config = json.loads((partial / "config.json").read_text())
        if config.get("bos_token") is None:  # CTranslate2 refuses a null one; our prompts never start with it
            config["bos_token"] = config["eos_token"]
            (partial / "config.json").write_text(json.dumps(config, indent=2))
        partial.rename(converted)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    generator = ctranslate2.Generator(str(converted), device="cpu", inter_threads=1, intra_threads=0)
    return LoadedModel(spec, generator, tokenizer)


class SerialDecoder(DecodeThread):
    """One request at a time."""

    def _decode(self, jobs: list[Job]) -> None:
        [job] = jobs
        generator, tokenizer = job.model.model, job.model.tokenizer
        prompt = prompt_ids(tokenizer, job.request, self.config.context_tokens)
        sampling = {"sampling_topk": 1}
        if job.temperature > 0:  # unseeded: `Completions.refusal` refuses a seed with sampling
            sampling = {"sampling_topk": 0, "sampling_temperature": job.temperature}
        ids: list[int] = []
        raw, whole = "", False
        for step in generator.generate_tokens(tokenizer.convert_ids_to_tokens(prompt),
                                              max_length=job.max_new_tokens, end_token=tokenizer.eos_token,
                                              **sampling):
            if step.token_id == tokenizer.eos_token_id:
                whole = True
                break
            ids.append(step.token_id)
            raw = tokenizer.decode(ids, skip_special_tokens=True)
            if job.on_text is not None and len(shown := visible_text(job, raw)) > len(job._sent):
                job._sent = shown
                job.on_text(shown)
            if finished(job, raw, self.config.max_lines):
                whole = True
                break
        job.prompt_tokens, job.completion_tokens = len(prompt), len(ids)
        job.text = final_text(job, raw, self.config.max_lines)
        job.finish_reason = "stop" if whole else "length"
        if job.on_text is not None and job.text != job._sent:
            job.on_text(job.text)
