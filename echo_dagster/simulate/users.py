"""Simulated developers: who they are and how they work."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from echo_dagster.metrics import DEFAULT_TAU


@dataclass(frozen=True)
class Persona:
    user_id: str
    tenant_id: str
    tau: float  # accepts a proposal at this edit similarity to what they mean to write
    chars_per_second: float  # typing speed
    typo_rate: float  # typos per line typed, fixed a little later
    partial_accept_rate: float  # takes only the first line of a multi-line proposal
    client: str


CLIENTS = ("vscode-echo/1.4.2", "jetbrains-echo/0.9.1", "neovim-echo/0.3.0")


def make_personas(count: int, seed: int, tenants: int = 2) -> list[Persona]:
    rng = random.Random(f"personas-{seed}")
    return [
        Persona(
            user_id=f"user-{seed}-{n:03d}",
            tenant_id=f"tenant-{n % tenants}",
            tau=min(0.95, max(0.65, rng.gauss(DEFAULT_TAU, 0.05))),
            chars_per_second=rng.uniform(3.0, 8.0),
            typo_rate=rng.uniform(0.0, 0.15),
            partial_accept_rate=rng.uniform(0.0, 0.3),
            client=CLIENTS[n % len(CLIENTS)],
        )
        for n in range(count)
    ]


def personas_for(users: int, seed: int, eval_users: int, split_of: Callable[[Persona], str]) -> list[Persona]:
    """`users` personas of which `eval_users` work on held-out files (`split_of` says a persona's
    split): personas are made in order until both splits have enough, the first of each kept. With
    `eval_users` 0 the split falls where it falls (`make_personas`)."""
    if not eval_users:
        return make_personas(users, seed)
    if eval_users > users:
        raise ValueError(f"eval_users={eval_users} is more than users={users}")
    wanted = {"eval": eval_users, "train": users - eval_users}
    count = users
    while True:
        made = make_personas(count, seed)
        kept = {split: [p for p in made if split_of(p) == split][:n] for split, n in wanted.items()}
        if all(len(kept[split]) == n for split, n in wanted.items()):
            return sorted(kept["train"] + kept["eval"], key=lambda p: p.user_id)
        count += users

