"""Generation throughput: batched greedy decoding against one prompt at a time with plain HF `generate`.

    python benchmarks/generation.py                    # 32 prompts of the default corpus, batch 16
    python benchmarks/generation.py --prompts 64 --model /path/to/hf-folder --device cuda

Same prompts, same run, greedy, 32 new tokens: (1) one prompt at a time with plain `generate`
(the baseline), (2) batches of 16, left-padded, KV cache, same `generate` settings — tokens/s of
each and the ratio; (3) `complete()`, the runtime the simulator uses (batches plus stop rules and
the syntactic cut) — proposals/s against the baseline's. Appends the figures to
benchmarks/out/generation.json.
"""

from __future__ import annotations

import argparse
import random
import time

from report import report


def main() -> None:
    import torch

    from echo_dagster import env
    from echo_dagster.completion import CompletionRequest
    from echo_dagster.corpus import scan_source
    from echo_dagster.model.generation import GenerationConfig, complete, prompt_ids
    from echo_dagster.model.loading import load_model

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--model", default=env.base_model())
    parser.add_argument("--source", default="dagster_shared")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    rng = random.Random(0)
    files = scan_source(args.source).files
    requests = []
    while len(requests) < args.prompts:
        text = rng.choice(files).text
        cut = rng.randrange(len(text) // 4, len(text))
        requests.append(CompletionRequest(text[:cut], text[cut:]))
    loaded = load_model(args.model, env.models_cache(), device=args.device)
    model, tokenizer = loaded.model, loaded.tokenizer
    config = GenerationConfig(batch_size=args.batch_size, max_new_tokens=32)
    prompts = [prompt_ids(tokenizer, r, config.context_tokens) for r in requests]
    pad = tokenizer.pad_token_id

    def new_tokens(row) -> int:
        return int((row != pad).sum())

    start = time.perf_counter()
    single_tokens = 0
    with torch.inference_mode():
        for ids in prompts:
            out = model.generate(torch.tensor([ids], device=args.device), attention_mask=torch.ones(1, len(ids), dtype=torch.long, device=args.device),
                                 do_sample=False, max_new_tokens=config.max_new_tokens, pad_token_id=pad)
            single_tokens += new_tokens(out[0, len(ids):])
    single_s = time.perf_counter() - start

    start = time.perf_counter()
    batched_tokens = 0
    with torch.inference_mode():
        for i in range(0, len(prompts), args.batch_size):
            batch = prompts[i : i + args.batch_size]
            width = max(map(len, batch))
            ids = torch.tensor([[pad] * (width - len(p)) + p for p in batch], device=args.device)
            mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch], device=args.device)
            out = model.generate(ids, attention_mask=mask, do_sample=False, max_new_tokens=config.max_new_tokens,
                                 pad_token_id=pad)
            batched_tokens += sum(new_tokens(row[width:]) for row in out)
    batched_s = time.perf_counter() - start

    start = time.perf_counter()
    complete(loaded, requests, config)
    complete_s = time.perf_counter() - start

    record = {
        "model": args.model, "device": args.device, "prompts": len(prompts), "batch_size": args.batch_size,
        "prompt_tokens_mean": round(sum(map(len, prompts)) / len(prompts)),
        "single_tokens_per_s": round(single_tokens / single_s, 1),
        "batched_tokens_per_s": round(batched_tokens / batched_s, 1),
        "tokens_per_s_ratio": round((batched_tokens / batched_s) / (single_tokens / single_s), 2),
        "single_proposals_per_s": round(len(prompts) / single_s, 3),
        "complete_proposals_per_s": round(len(prompts) / complete_s, 3),
        "proposals_per_s_ratio": round(single_s / complete_s, 2),
    }
    report("generation", record)


if __name__ == "__main__":
    main()
