"""Completions for a server: requests that arrive while the model is busy wait and then decode
together, one batch, in one thread; each sees its text grow as the batch decodes (streaming).

On a CPU a decoding step costs about the same for one row or eight (it is bound by overhead, not
arithmetic), so eight clients at once get their proposals in little more than the time of one.
A batch runs on the model it started with: a model swapped in meanwhile (`ChampionFollower`)
serves the next batch, and no request in flight fails or changes model half way.

A proposal follows `completion`'s rules, as the model was trained: one line for a trigger in the
middle of a line, else a block. A client's `stop` strings and token limit cut it further. Only a
one-line proposal streams token by token: a block is cut at a syntactic boundary once whole, so
what was sent could otherwise be taken back.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

from echo_dagster.completion import CompletionRequest, is_mid_line, is_whole, postprocess
from echo_dagster.model.generation import GenerationConfig, prompt_ids
from echo_dagster.model.loading import LoadedModel


@dataclass
class Job:
    request: CompletionRequest
    model: LoadedModel
    max_new_tokens: int
    stop: tuple[str, ...] = ()
    temperature: float = 0.0  # 0: greedy
    seed: int | None = None
    on_text: Callable[[str], None] | None = None  # called from the decoding thread with the text so far that is final
    on_done: Callable[[], None] | None = None  # called from the decoding thread once the job is finished
    # Set when done:
    text: str = ""
    finish_reason: str = ""  # "stop" (whole, or a stop string) or "length"
    error: BaseException | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    _sent: str = ""  # what on_text was given last


def final_text(job: Job, raw: str, max_lines: int) -> str:
    """The proposal: `completion`'s rules, then the client's stop strings."""
    return _cut_at_stop(postprocess(job.request, raw, max_lines), job.stop)


def finished(job: Job, raw: str, max_lines: int) -> bool:
    """Whether decoding can stop: the proposal is whole, or a stop string came."""
    return is_whole(job.request, raw, max_lines) or any(s and s in raw for s in job.stop)


def visible_text(job: Job, raw: str) -> str:
    """What of a one-line proposal can be sent before it is whole: nothing later text can take
    back — not trailing blanks (the proposal is stripped), not the start of a stop string, not half
    a character."""
    if not is_mid_line(job.request.prefix):
        return ""
    # A token can end inside a character (its bytes split over two tokens): decoded, a U+FFFD.
    line = _cut_at_stop(raw.split("\n", 1)[0], job.stop).rstrip("\ufffd")
    held = max((n for s in job.stop for n in range(1, len(s)) if line.endswith(s[:n])), default=0)
    return line[: len(line) - held].rstrip()


def _cut_at_stop(text: str, stops: tuple[str, ...]) -> str:
    cut = min((at for s in stops if s and (at := text.find(s)) >= 0), default=len(text))
    return text[:cut].rstrip() if cut < len(text) else text


class DecodeThread:
    """Jobs decoded in one thread: `_next(first)` says which to decode together, `_decode` decodes
    them; a failure is every one of their errors, and the thread goes on."""

    def __init__(self, config: GenerationConfig = GenerationConfig()):
        self.config = config
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name=f"serve-{type(self).__name__}", daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> None:
        self._queue.put(job)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _next(self, first: Job) -> list[list[Job]]:
        return [[first]]

    def _decode(self, jobs: list[Job]) -> None:
        raise NotImplementedError

    def _loop(self) -> None:
        while (first := self._queue.get()) is not None:
            for jobs in self._next(first):
                try:
                    self._decode(jobs)
                except BaseException as exc:
                    for job in jobs:
                        job.error = exc
                finally:
                    for job in jobs:
                        if job.on_done is not None:
                            job.on_done()


class Batcher(DecodeThread):
    def _next(self, first: Job) -> list[list[Job]]:
        """The jobs waiting, up to a batch, grouped by what a batch must share."""
        jobs = [first]
        while len(jobs) < self.config.batch_size:
            try:
                more = self._queue.get_nowait()
            except queue.Empty:
                break
            if more is None:
                self._queue.put(None)  # finish this batch, then stop
                break
            jobs.append(more)
        # Rows of one batch share a model and a way of decoding.
        groups: dict[tuple, list[Job]] = {}
        for job in jobs:
            groups.setdefault((id(job.model), job.temperature, job.seed), []).append(job)
        return list(groups.values())

    def _decode(self, jobs: list[Job]) -> None:
        import torch

        loaded = jobs[0].model
        model, tokenizer = loaded.model, loaded.tokenizer
        prompts = [prompt_ids(tokenizer, j.request, self.config.context_tokens) for j in jobs]
        width = max(len(p) for p in prompts)
        pad = tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=model.device)
        attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=model.device)
        progress = _Progress(tokenizer, jobs, width, self.config.max_lines)
        sampling = {}
        if jobs[0].temperature > 0:
            if jobs[0].seed is not None:
                torch.manual_seed(jobs[0].seed)
            sampling = {"do_sample": True, "temperature": jobs[0].temperature, "top_k": 0}
        with torch.inference_mode():
            output = model.generate(input_ids=input_ids, attention_mask=attention,
                                    max_new_tokens=max(j.max_new_tokens for j in jobs), stopping_criteria=[progress],
                                    pad_token_id=pad, use_cache=True, **({"do_sample": False} | sampling))
        for job, prompt, row in zip(jobs, prompts, output[:, width:].tolist()):
            new = row[: job.max_new_tokens]
            while new and new[-1] == pad and pad != tokenizer.eos_token_id:
                new.pop()
            raw = tokenizer.decode(new, skip_special_tokens=True)
            job.prompt_tokens, job.completion_tokens = len(prompt), len(new)
            job.text = final_text(job, raw, self.config.max_lines)
            whole = finished(job, raw, self.config.max_lines) or tokenizer.eos_token_id in new
            job.finish_reason = "stop" if whole else "length"
            if job.on_text is not None and job.text != job._sent:
                job.on_text(job.text)


class _Progress:
    """Called by `generate` after every step: streams each row's new text and stops the rows that
    are whole, hit a stop string or used their own token budget."""

    def __init__(self, tokenizer, jobs: list[Job], width: int, max_lines: int):
        self.tokenizer, self.jobs, self.width, self.max_lines = tokenizer, jobs, width, max_lines

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        steps = input_ids.shape[1] - self.width
        texts = self.tokenizer.batch_decode(input_ids[:, self.width :], skip_special_tokens=True)
        done = []
        for job, raw in zip(self.jobs, texts):
            if job.on_text is not None:
                shown = visible_text(job, raw)
                if len(shown) > len(job._sent):
                    job._sent = shown
                    job.on_text(shown)
            done.append(finished(job, raw, self.max_lines) or steps >= job.max_new_tokens)
        return torch.tensor(done, device=input_ids.device)
