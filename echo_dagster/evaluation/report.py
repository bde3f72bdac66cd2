"""The evaluation report: tables (Markdown for the Dagster UI, HTML for the file), a chart, JSON,
and a self-contained HTML page under `$ECHO_HOME/reports/`."""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

from echo_dagster.evaluation.gate import Verdict
from echo_dagster.evaluation.offline import Scored, by_group, summarize
from echo_dagster.evaluation.suite import Arm, ArmResult

Table = tuple[tuple[str, ...], list[tuple[str, ...]]]  # header, rows


# The Dagster UI shows a table metadata value inline at any size but a Markdown one only under
# 1,000 characters (else behind "[Show Markdown]"), and cuts off what is wider than its column (about
# 450 pixels on an asset's overview): the UI gets narrow tables, one question each (`ui_tables`),
# the models named by their roles (the names are in the asset's metadata), and the chart as bars of
# text.
KEPT = "Kept characters per request on the held-out eval set"
ACCEPTANCE = "Acceptance on the held-out eval set"
MEASURES = "Other measures"
BY_LANGUAGE = "Acceptance by language"
BY_SOURCE_KIND = "Acceptance by source kind"
BAR_CELLS = 10
ROLE_ORDER = ("challenger", "champion", "base", "repository")


@dataclass(frozen=True)
class Report:
    title: str
    tables: dict[str, Table]  # caption -> table
    chart_png: bytes
    figures: dict  # everything, as JSON
    ui_tables: dict[str, Table] = field(default_factory=dict)  # caption -> a narrow table for the Dagster UI

    def markdown(self, caption: str) -> str:
        return markdown_table(self.tables[caption])

    def chart_markdown(self) -> str:
        return f"![acceptance, generation rate and ES by model](data:image/png;base64,{_b64(self.chart_png)})"

    def html(self) -> str:
        parts = [f"<h1>{html.escape(self.title)}</h1>"]
        for caption, (header, rows) in self.tables.items():
            parts.append(f"<h2>{html.escape(caption)}</h2><table><tr>"
                         + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"
                         + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                                   for row in rows) + "</table>")
        parts.append(f'<h2>Chart</h2><img alt="chart" src="data:image/png;base64,{_b64(self.chart_png)}">')
        parts.append("<h2>Figures (JSON)</h2><pre>" + html.escape(json.dumps(self.figures, indent=2)) + "</pre>")
        style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:1em}"
                 "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#eee}")
        return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}</title>"
                f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")

    def write(self, folder: Path) -> Path:
        """report.html (self-contained), report.json and chart.png in `folder`; the HTML's path."""
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "chart.png").write_bytes(self.chart_png)
        (folder / "report.json").write_text(json.dumps(self.figures, indent=2))
        page = folder / "report.html"
        page.write_text(self.html())
        return page


def build(title: str, results: list[ArmResult], verdict: Verdict | None, context: dict) -> Report:
    tables = {"Held-out eval set (95% intervals resampling files)": _overall(results),
              "Acceptance by language": grouped(results, "by_language"),
              "Acceptance by source kind": grouped(results, "by_source_kind")}
    if verdict is not None:
        tables["Promotion gate"] = (("promote", "reasons"), [("yes" if verdict.promote else "no",
                                                               "; ".join(verdict.reasons))])
    figures = {**context, "models": [model_figures(r) for r in results],
               "gate": {"promote": verdict.promote, "reasons": verdict.reasons, "figures": verdict.figures}
               if verdict else None}
    ui = {KEPT: _kept(results), ACCEPTANCE: _acceptance(results), MEASURES: _measures(results),
          BY_LANGUAGE: _by_group(results, "by_language", "language"),
          BY_SOURCE_KIND: _by_group(results, "by_source_kind", "source kind")}
    return Report(title, tables, chart(results), figures, ui)


def _by_roles(results: list[ArmResult]) -> list[ArmResult]:
    """The models, the challenger first, then the champion, the base, the repository baseline."""
    return sorted(results, key=lambda r: min(ROLE_ORDER.index(role) for role in r.arm.roles))


def _role(r: ArmResult) -> str:
    return ", ".join(sorted(r.arm.roles, key=ROLE_ORDER.index))


def _kept(results: list[ArmResult]) -> Table:
    """Per model: kept characters per request (what the gate decides on), its interval, the rows
    and files behind it."""
    results = _by_roles(results)
    header = ("model", "kept chars / request", "95% interval", "rows, files")
    rows = []
    for r in results:
        v = r.summary.get("kept_chars")
        rows.append((_role(r), f"{v[0]:.2f}" if v else "–", f"{v[1]:.2f}–{v[2]:.2f}" if v else "–",
                     f"{r.summary.get('n', 0)}, {r.summary.get('files', 0)}"))
    return header, rows


def _acceptance(results: list[ArmResult]) -> Table:
    """Per model: acceptance, its interval and a bar (the bars' scale: the highest upper bound)."""
    results = _by_roles(results)
    values = [r.summary.get("acceptance") for r in results]
    top = max((v[2] for v in values if v), default=0.0)
    scale = next((s for s in (0.05, 0.1, 0.2, 0.25, 0.5, 1.0) if top <= s), 1.0)
    header = ("model", "acceptance", "95% interval", f"bar, 0–{scale:.0%}")
    rows = [(_role(r), _pct(v[0] if v else None), f"{v[1]:.1%}–{v[2]:.1%}" if v else "–",
             bar(v[0] / scale if v else 0.0)) for r, v in zip(results, values)]
    return header, rows


def _measures(results: list[ArmResult]) -> Table:
    """A row per measure, a column per model."""
    results = _by_roles(results)
    header = ("measure", *map(_role, results))
    rows = [(label, *(_pct(r.summary[m][0] if r.summary.get(m) else None) for r in results))
            for m, label in MEASURE_LABELS]
    rows.append(("proposal chars", *(_number(r.summary.get("proposal_chars")) for r in results)))
    rows.append(("replay acceptance", *(_pct((r.replay or {}).get("acceptance_rate")) for r in results)))
    rows.append(("replay kept chars", *(_number((r.replay or {}).get("kept_chars")) for r in results)))
    rows.append(("HumanEval lines pass", *(_pct(r.humaneval_pass_rate) for r in results)))
    rows.append(("stdlib kept chars", *(_number(r.stdlib_summary.get("kept_chars")) for r in results)))
    return header, rows


MEASURE_LABELS = (("exact_match", "exact match"), ("exact_match_prefix", "exact match, k lines"),
                  ("edit_similarity", "ES"), ("edit_similarity_prefix", "ES, k lines"),
                  ("line_precision", "line precision"), ("line_recall", "line recall"),
                  ("generation_rate", "generation rate"))


def _number(value) -> str:
    """A mean (or the first of a (value, low, high) triple) with two decimals."""
    if value is None:
        return "–"
    return f"{value[0] if isinstance(value, (tuple, list)) else value:.2f}"


def _by_group(results: list[ArmResult], attribute: str, label: str) -> Table:
    """A row per group, a column per model: acceptance and the group's rows."""
    results = _by_roles(results)
    groups = sorted({g for r in results for g in getattr(r, attribute)})
    return (label, *map(_role, results)), [(g, *(_cell(getattr(r, attribute).get(g)) for r in results))
                                           for g in groups]


def bar(share: float, cells: int = BAR_CELLS) -> str:
    """`share` (0 to 1) of `cells` character cells, in eighths of a cell."""
    eighths = round(max(0.0, min(1.0, share)) * cells * 8)
    full, rest = divmod(eighths, 8)
    return ("█" * full + ("▏▎▍▌▋▊▉"[rest - 1] if rest else "")).ljust(cells, "·")


def _overall(results: list[ArmResult]) -> Table:
    header = ("model", "roles", "rows", "files", "sessions", "kept chars / request", "acceptance",
              *(label for _, label in MEASURE_LABELS), "replay acceptance", "replay kept chars",
              "HumanEval lines pass", "stdlib kept chars")
    rows = []
    for r in results:
        s = r.summary
        replay = r.replay or {}
        rows.append((r.arm.name, ", ".join(r.arm.roles), str(s["n"]), str(s.get("files", 0)), str(s.get("sessions", 0)),
                     chars(s.get("kept_chars")), interval(s.get("acceptance")),
                     *(interval(s.get(m)) for m, _ in MEASURE_LABELS),
                     _pct(replay.get("acceptance_rate")), _number(replay.get("kept_chars")),
                     _pct(r.humaneval_pass_rate), chars(r.stdlib_summary.get("kept_chars"))))
    return header, rows


def grouped(results: list[ArmResult], attribute: str) -> Table:
    """A column per group (language, source kind): each model's acceptance there, its interval, n."""
    groups = sorted({g for r in results for g in getattr(r, attribute)})
    header = ("model", *groups)
    rows = [(r.arm.name, *(_cell(getattr(r, attribute).get(g)) for g in groups)) for r in results]
    return header, rows


def _cell(summary: dict | None) -> str:
    if not summary or not summary.get("n"):
        return "–"
    return f"{interval(summary['acceptance'])} (n={summary['n']})"


def markdown_table(table: Table) -> str:
    header, rows = table
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def interval(value: tuple[float, float, float] | None) -> str:
    """A share with its interval: 12.3% [10.1%, 14.6%]."""
    if value is None:
        return "–"
    v, low, high = value
    return f"{v:.1%} [{low:.1%}, {high:.1%}]"


def chars(value: tuple[float, float, float] | None, signed: bool = False) -> str:
    """Characters with their interval: 4.14 [2.90, 5.31]; `signed`, a difference: +1.45 [+0.83, +2.07]."""
    if value is None:
        return "–"
    v, low, high = value
    sign = "+" if signed else ""
    return f"{v:{sign}.2f} [{low:{sign}.2f}, {high:{sign}.2f}]"


def points(value: tuple[float, float, float] | None) -> str:
    """A difference of shares in points with its interval: +6.7 [+4.0, +9.2]."""
    if value is None:
        return "–"
    v, low, high = value
    return f"{v * 100:+.1f} [{low * 100:+.1f}, {high * 100:+.1f}]"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def model_figures(r: ArmResult) -> dict:
    return {"name": r.arm.name, "spec": r.arm.spec, "roles": list(r.arm.roles), "eval_set": r.summary,
            "by_language": r.by_language, "by_source_kind": r.by_source_kind, "replay": r.replay,
            "humaneval_pass_rate": r.humaneval_pass_rate, "humaneval_tasks": len(r.humaneval),
            "stdlib": r.stdlib_summary or None,
            "seconds": {k: round(v, 1) for k, v in r.seconds.items()}}


def chart(results: list[ArmResult]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")  # no display; a PNG in memory
    import matplotlib.pyplot as plt
    import numpy as np

    metrics = (("acceptance", "acceptance"), ("generation_rate", "generation rate"), ("edit_similarity", "ES"))
    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=100)
    width = 0.8 / max(1, len(results))
    for n, r in enumerate(results):
        values = [r.summary.get(m, (0.0, 0.0, 0.0)) for m, _ in metrics]
        centers = np.arange(len(metrics)) + (n - (len(results) - 1) / 2) * width
        errors = np.array([[v - low for v, low, _ in values], [high - v for v, _, high in values]])
        ax.bar(centers, [v for v, _, _ in values], width, yerr=errors, capsize=3,
               label=f"{r.arm.name} ({', '.join(r.arm.roles)})")
    ax.set_xticks(np.arange(len(metrics)), [label for _, label in metrics])
    ax.set_ylim(0, 1)
    ax.set_ylabel("held-out eval set")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# The per-row scores behind a report, compact: the rows' identity (and truth) once, each model's
# scores and proposals as columns in the same order — enough to recompute any interval
# (`scored_from`), or any score without generating (`offline.score` on the targets and proposals).
_ROW_FIELDS = ("completion_id", "language", "source_kind", "file", "session", "target")
_SCORE_FIELDS = tuple(f for f in Scored.__dataclass_fields__ if f not in _ROW_FIELDS)


def raw_scores(results: list[ArmResult], provenance: dict) -> dict:
    def columns(scored: list[Scored], fields) -> dict:
        return {f: [round(v, 4) if isinstance(v, float) else v for v in (getattr(x, f) for x in scored)]
                for f in fields}

    rows = columns(results[0].scored, _ROW_FIELDS) if results else {}
    models = {}
    for r in results:
        if [x.completion_id for x in r.scored] != rows.get("completion_id"):
            raise ValueError(f"{r.arm.name}: scored on other rows than {results[0].arm.name}")
        models[r.arm.name] = {"roles": list(r.arm.roles), "scores": columns(r.scored, _SCORE_FIELDS),
                              "humaneval": [list(t) for t in r.humaneval],
                              "stdlib": columns(r.stdlib, _ROW_FIELDS + _SCORE_FIELDS) if r.stdlib else None}
    return {"provenance": provenance, "rows": rows, "models": models}


def write_scores(path: Path, results: list[ArmResult], provenance: dict) -> None:
    path.write_text(json.dumps(raw_scores(results, provenance), separators=(",", ":"), default=str))


def result_from(raw: dict, model: str, resamples: int = 2_000) -> ArmResult:
    """A model's result, back from `raw_scores`: its rows, HumanEval tasks and stdlib completions
    scored, every summary computed again from them (the replay A/B is not kept)."""
    kept = raw["models"][model]
    scored = scored_from(raw, model)
    stdlib = kept["stdlib"]
    stdlib_rows = _scored(stdlib) if stdlib else []
    return ArmResult(Arm(model, "", tuple(kept["roles"])), scored, summarize(scored, resamples),
                     by_group(scored, "language", resamples=resamples),
                     by_group(scored, "source_kind", resamples=resamples),
                     humaneval=[tuple(t) for t in kept["humaneval"]], stdlib=stdlib_rows,
                     stdlib_summary=summarize(stdlib_rows, resamples) if stdlib_rows else {})


def scored_from(raw: dict, model: str) -> list[Scored]:
    """A model's per-row scores, back from `raw_scores` (of a file written before targets and
    proposals were kept, without them)."""
    return _scored(raw["rows"] | raw["models"][model]["scores"])


def _scored(columns: dict) -> list[Scored]:
    fields = [f for f in _ROW_FIELDS + _SCORE_FIELDS if f in columns]
    return [Scored(**{f: columns[f][i] for f in fields}) for i in range(len(columns["completion_id"]))]
