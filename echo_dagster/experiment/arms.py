"""The training data of each arm of the experiment, from one harvested warehouse.

* **echo** — the full pipeline: final states, trimmed, filtered (view `training_examples`).
* **naive_logs** — what "learn from what users accepted" gives: each accepted proposal as it was
  shown, its context as the client sent it; nothing of what the user did afterwards.
* **untrimmed** — the final states without the trimming and the filters: for every completion
  with a final state, the whole region the user kept at its place (up to where the document's
  text after the cursor resumes), in its final document, duplicates and noise included.
* **repository** — plain code of the training-split files, random line starts (`training.repository`).
* **repository_completions** — the same files cut like completions: at the trigger points and to
  the target rule the harvest uses (`training.repository.completion_examples`): what a fine-tune on
  the team's repository with FIM-style spans gives, the strongest static arm.
* **preference** — beyond the paper: Echo's checkpoint, then DPO (`training.preference`) on the
  pairs of Echo's examples where the user did not keep the proposal as shown: (the code they kept,
  the proposal they rejected or rewrote).

Every arm leaves out the files of the eval split, so that no arm trains on what evaluation reads, and
the experiment leaves out every example whose target equals or nearly equals an eval target
(`filters.decontaminate`).
"""

from __future__ import annotations

import duckdb

from echo_dagster.splits import file_split

ARMS = ("echo", "naive_logs", "untrimmed", "repository", "repository_completions", "preference")
# Those the experiment runs unless told: the paper's and the strongest static arm. The preference arm
# costs about 35 minutes more here and did not beat Echo (docs/benchmarks.md#echo--dpo-the-preference-arm).
DEFAULT_ARMS = ARMS[:5]

_NAIVE = """
SELECT s.tenant_id || ':' || s.completion_id AS completion_id, s.repo, s.path, s.language, s.prefix, s.suffix,
       a.accepted_text AS target
FROM raw_sessions s JOIN raw_sessions a
     ON a.event = 'completion_accepted' AND a.tenant_id = s.tenant_id AND a.completion_id = s.completion_id
WHERE s.event = 'completion_shown' AND trim(a.accepted_text) <> ''
ORDER BY 1
"""
# The proposal as stored is de-identified like the target, so the two differ only where the user did.
_PAIRS = """
SELECT tenant_id || ':' || completion_id AS completion_id, repo, path, language, prefix, suffix, target,
       proposal AS rejected
FROM training_examples
WHERE trim(coalesce(proposal, ''), $space) <> '' AND rtrim(proposal, $space) <> rtrim(target, $space)
ORDER BY 1
"""
_UNTRIMMED = """
SELECT t.tenant_id || ':' || t.completion_id AS completion_id, t.repo, t.path, t.language,
       substring(d.document, 1, t.target_start) AS prefix,
       substring(d.document, t.region_end + 1) AS suffix,
       substring(d.document, t.target_start + 1, t.region_end - t.target_start) AS target
FROM refined_targets t JOIN final_documents d USING (partition_date, document_id)
WHERE t.target IS NOT NULL AND t.region_end IS NOT NULL
ORDER BY 1
"""


def examples(con: duckdb.DuckDBPyConnection, arm: str) -> list[dict]:
    """The training examples of `arm` (not Echo's: `training.window.load`; not the repository arms':
    they read code, not the warehouse); the preference arm's are pairs, each with the `rejected`
    proposal beside its target."""
    queries = {"naive_logs": _NAIVE, "untrimmed": _UNTRIMMED, "preference": _PAIRS}
    if arm not in queries:
        raise ValueError(f"arm {arm!r}: expected echo, {', '.join(queries)}")
    cursor = con.execute(queries[arm], {"space": " \t\r\n"} if arm == "preference" else None)
    names = [d[0] for d in cursor.description]
    rows = [dict(zip(names, values)) for values in cursor.fetchall()]
    return [r for r in rows if file_split(r["repo"], r["path"]) == "train"]
