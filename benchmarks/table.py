"""Markdown tables from a results JSON: times per mode, speedups of llm, compile time, memory, headroom.

    python benchmarks/table.py benchmarks/results/2026-11-25-h200.json -o benchmarks/results/2026-11-25-h200.md

Speedup = baseline median / llm median (above 1: llm is faster). A cell marked †
compares rows from different runs (processes); one marked ‡ is an llm row that
substituted no kernel, so it ran Inductor's own code and the ratio is run-to-run
noise. Failed and incorrect rows are listed with their errors under the tables,
and a suite's cases that have not run yet are shown as "not run": nothing is left out.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common  # noqa: E402

MODE_ORDER = ("eager", "inductor", "max-autotune", "llm", "llm-max-autotune", "max-autotune-cudagraphs")


def cases(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, dict[str, Any]]]]:
    """[(suite, case, {mode: row})] in suite order, then case order of first appearance.

    A case of a suite in the file that has no row yet comes with no rows, so that the
    table shows it as not run instead of leaving it out.
    """
    out: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for r in doc["rows"]:
        out.setdefault((r["suite"], r["case"]), {})[r["mode"]] = r
    for suite in {s for s, _ in out}:
        for case in _suite_cases(suite):
            out.setdefault((suite, case.name), {})
    return sorted(((s, c, m) for (s, c), m in out.items()), key=lambda x: (x[0] != "regions", x[0]))


# The baseline an llm mode compiles exactly like when the store serves it nothing.
SAME_CODE = {"llm": "inductor", "llm-max-autotune": "max-autotune"}


def _suite_cases(suite: str) -> list[common.Case]:
    from benchmarks.suites import cases as suite_cases

    try:
        return suite_cases(suite)
    except Exception:  # a results file from another checkout: show what it has
        return []


def _shape(suite: str, name: str, rows: dict[str, dict[str, Any]]) -> str:
    for r in rows.values():
        return r.get("shape", "")
    return next((c.shape(False) for c in _suite_cases(suite) if c.name == name), "")


def modes_present(doc: dict[str, Any]) -> list[str]:
    seen = {r["mode"] for r in doc["rows"]}
    return [m for m in MODE_ORDER if m in seen] + sorted(seen - set(MODE_ORDER))


def _ms(x: float | None) -> str:
    if x is None:
        return "–"
    return f"{x:.0f}" if x >= 1e4 else f"{x:.4g}"


class Notes:
    """Footnotes for failed rows: the table cell carries the number, the list the error."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, row: dict[str, Any]) -> str:
        self.items.append(
            f"{row['suite']}/{row['case']}/{row['mode']}: {row['status']} at {row.get('stage', '?')}: "
            f"{(row.get('error') or '').splitlines()[0][:300] if row.get('error') else ''}"
        )
        return f"[{len(self.items)}]"


def cell(row: dict[str, Any] | None, notes: Notes) -> str:
    if row is None:
        return "not run"
    if row.get("status") != common.OK:
        return f"{row.get('status')} {notes.add(row)}"
    return f"{_ms(row['median_ms'])} ({_ms(row['p20_ms'])}–{_ms(row['p80_ms'])})"


def speedup(rows: dict[str, dict[str, Any]], llm: str, base: str) -> str:
    r = rows.get(llm)
    s = (r or {}).get("speedup_over", {}).get(base)
    if s is None:
        return "–"
    mixed = "†" if r.get("run_id") != rows[base].get("run_id") else ""
    same_code = "‡" if r.get("substituted") == 0 and SAME_CODE.get(llm) == base else ""
    return f"{s:.2f}x{mixed}{same_code}"


def times_table(doc: dict[str, Any], suite: str, notes: Notes) -> list[str]:
    modes = modes_present(doc)
    llm_modes = [m for m in modes if m in common.LLM_MODES]
    pairs = [(m, b) for m in llm_modes for b in common.LLM_MODES[m] if b in modes]
    head = [
        "case",
        "shape",
        "floor ms",
        *[f"{m} ms" for m in modes],
        *[f"{m} vs {b}" for m, b in pairs],
        *[f"{m} % floor" for m in llm_modes],
        "substituted / fallbacks",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s, name, rows in cases(doc):
        if s != suite:
            continue
        any_row = next(iter(rows.values()), {})
        pct = [f"{rows[m]['roofline_pct']:.0f}%" if rows.get(m, {}).get("roofline_pct") else "–" for m in llm_modes]
        subst = [f"{rows[m].get('substituted', '–')} / {rows[m].get('fallbacks', '–')}" for m in llm_modes if m in rows]
        cells = [
            name,
            _shape(s, name, rows),
            _ms(any_row.get("floor_ms")),
            *[cell(rows.get(m), notes) for m in modes],
            *[speedup(rows, m, b) for m, b in pairs],
            *pct,
            ", ".join(subst) or "–",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def compile_table(doc: dict[str, Any]) -> list[str]:
    lines = [
        "| case | mode | compile cold s | compile warm s | step peak GiB | % of floor |",
        "|---|---|---|---|---|---|",
    ]
    for _, name, rows in cases(doc):
        for mode in modes_present(doc):
            r = rows.get(mode)
            if r is None or r.get("status") != common.OK:
                continue

            def f(k: str, fmt: str, r: dict[str, Any] = r) -> str:
                return format(r[k], fmt) if r.get(k) is not None else "–"

            lines.append(
                f"| {name} | {mode} | {f('compile_cold_s', '.1f')} | {f('compile_warm_s', '.1f')} | "
                f"{f('step_peak_gib', '.2f')} | {f('roofline_pct', '.0f')} |"
            )
    return lines


def headroom(doc: dict[str, Any]) -> list[str]:
    """Per case: the best compiled baseline against the floor; the ms a perfect kernel would save."""
    rows_out = []
    for _, name, rows in cases(doc):
        best = [r for m, r in rows.items() if m in ("inductor", "max-autotune") and r.get("status") == common.OK]
        if not best or not best[0].get("floor_ms"):
            continue
        b = min(best, key=lambda r: r["median_ms"])
        rows_out.append((b["median_ms"] - b["floor_ms"], name, b))
    rows_out.sort(key=lambda x: -x[0])
    lines = ["| case | best baseline | ms | floor ms | x floor | headroom ms |", "|---|---|---|---|---|---|"]
    for gap, name, b in rows_out:
        lines.append(
            f"| {name} | {b['mode']} | {_ms(b['median_ms'])} | {_ms(b['floor_ms'])} | "
            f"{b['median_ms'] / b['floor_ms']:.2f} | {_ms(gap)} |"
        )
    return lines


def kernel_shares(doc: dict[str, Any], top: int = 5) -> list[str]:
    lines = []
    for _, name, rows in cases(doc):
        r = rows.get("inductor") or rows.get("max-autotune")
        if not r or not r.get("top_kernels"):
            continue
        shares = ", ".join(f"{k['name'][:60]} {100 * k['share']:.0f}%" for k in r["top_kernels"][:top])
        lines.append(f"- **{name}** ({r['mode']}): {shares}")
    return lines


def run_lines(doc: dict[str, Any]) -> list[str]:
    lines = []
    for run_id, info in sorted(doc["runs"].items()):
        v, g = info.get("versions", {}), info.get("git", {})
        dirty = " (uncommitted changes)" if g.get("dirty") else ""
        lines.append(
            f"- `{run_id}`: {info.get('device_name')} · torch {v.get('torch')} · triton {v.get('triton')} · "
            f"transformers {v.get('transformers')} · commit `{str(g.get('commit'))[:12]}`{dirty} · "
            f"tree `{info.get('tree_hash')}` · {info.get('date')}"
        )
    return lines


def markdown(doc: dict[str, Any]) -> str:
    notes = Notes()
    out = ["## Runs", "", *run_lines(doc), ""]
    settings = next(iter(doc["runs"].values()), {}).get("settings", {})
    if settings:
        out += [
            "Modes: " + "; ".join(f"**{m}** {d}" for m, d in settings.get("modes", {}).items()) + ".",
            f"Timing: {settings.get('timing', {}).get('fn_timer')}; "
            f"training: {settings.get('timing', {}).get('train_timer')}.",
            f"Correctness: {settings.get('check')}.",
            "",
        ]
    for suite in ("regions", "models"):
        if any(r["suite"] == suite for r in doc["rows"]):
            out += [f"## {suite.capitalize()}: median ms (p20–p80)", "", *times_table(doc, suite, notes), ""]
    out += [
        "Speedup = baseline median / llm median; † compares rows from different runs; ‡ llm substituted no "
        "kernel in this case, so it ran Inductor's code and the ratio is run-to-run noise.",
        "",
    ]
    out += ["## Compile time and memory", "", *compile_table(doc), ""]
    out += ["## Headroom: best of Inductor and max-autotune against the roofline floor", "", *headroom(doc), ""]
    shares = kernel_shares(doc)
    if shares:
        out += ["## Where the time goes in the models (GPU kernel time per step)", "", *shares, ""]
    if notes.items:
        out += ["## Failures", "", *[f"{i + 1}. {t}" for i, t in enumerate(notes.items)], ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results")
    p.add_argument("-o", "--out", help="write the markdown here (default: stdout)")
    args = p.parse_args(argv)
    from llm_inductor._errors import UsageError

    try:
        text = markdown(common.load(args.results))
    except UsageError as e:
        print(f"benchmarks/table.py: {e}", file=sys.stderr)
        return 2
    if args.out:
        Path(args.out).write_text(text + "\n")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
