"""``llm-inductor report --out report.html``: one HTML page from what the cache and the search recorded.

Sources, each optional, each read as far as it goes:
  the cache's entries     (``--cache-dir``, default LLM_INDUCTOR_CACHE_DIR): kernel, speed, provenance
  the attempt records     (``<cache_dir>/search/attempts.jsonl`` or ``--attempts``): one line per LLM answer
  Inductor's own kernels  (``<cache_dir>/search/reference/region_<key16>-*.json``, written by the search)
  benchmark results       (``--bench results.json`` from benchmarks/run.py)
A section per tuning run (attempts grouped by ``run_id``): regions, outcome, speedup,
% of roofline, calls, tokens, cost, plots; then every winner's kernel beside Inductor's.
Exit codes: 0 written, 1 written but nothing was recorded, 2 a named file is missing.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm_inductor._errors import UsageError
from llm_inductor.config import Config
from llm_inductor.passes.regionfile import read_sidecar, sidecar_path

CSS = """body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1400px;color:#222;padding:0 16px}
h1{font-size:22px}h2{font-size:18px;border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:32px}h3{font-size:15px}
table{border-collapse:collapse;margin:8px 0}\
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f4f4f4}td.n{text-align:right;font-variant-numeric:tabular-nums}\
.muted{color:#777}.bad{color:#a33}.good{color:#282}
.pair{display:grid;grid-template-columns:1fr 1fr;gap:12px}pre{background:#f7f7f7;border:1px solid #e3e3e3;padding:8px;
overflow:auto;max-height:520px;font-size:12px;margin:4px 0}\
img{max-width:100%;border:1px solid #eee;margin:6px 8px 6px 0;vertical-align:top}"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "report",
        help="an HTML report of tuning runs, cache entries and benchmarks",
        description="One HTML page from the cache's entries, the search's attempt records "
        "(a section per tuning run) and benchmark results.",
    )
    p.add_argument("--cache-dir", help="the cache to read (default: LLM_INDUCTOR_CACHE_DIR)")
    p.add_argument("--attempts", help="attempt records (default: <cache_dir>/search/attempts.jsonl)")
    p.add_argument(
        "--bench", action="append", default=[], metavar="JSON", help="benchmarks/run.py results (repeatable)"
    )
    p.add_argument("--run", help="only the tuning run whose id starts with this")
    p.add_argument("--out", required=True, help="the HTML file to write")
    p.set_defaults(func=main)


# ---------------------------------------------------------------------------- reading


def read_attempts(path: Path) -> tuple[list[dict[str, Any]], int]:
    """(records, lines skipped): a torn last line from a killed run is skipped, not fatal."""
    rows, bad = [], 0
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            row = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if isinstance(row, dict):
            rows.append(row)
        else:
            bad += 1
    return rows, bad


@dataclass
class CacheView:
    entries: list[tuple[Any, str, int]] = field(default_factory=list)  # (Entry, verdict, hits)
    pending: list[Any] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def read_cache(cfg: Config) -> CacheView:
    import llm_inductor.compile.state as _state

    view = CacheView()
    try:
        store = _state.store(cfg)
        if hasattr(store, "listings"):
            view.entries = [(r.entry, str(r.verdict), r.hits) for r in store.listings() if r.entry is not None]
        elif hasattr(store, "entries"):
            view.entries = [(e, e.status, 0) for e in store.entries()]
        else:
            view.notes.append(f"the store ({type(store).__name__}) cannot list its entries")
        view.pending = list(store.pending())
    except Exception as e:  # a broken cache still gets a report of what else was recorded
        view.notes.append(f"the cache at {cfg.cache_path} could not be read: {type(e).__name__}: {e}")
    return view


def speed_record(entry: Any) -> tuple[str | None, dict[str, Any]]:
    """The first GPU's speed record of an entry: (gpu, record)."""
    for gpu, rec in (entry.speed or {}).items():
        if isinstance(rec, dict):
            return gpu, rec
    return None, {}


def inductor_kernel(cache_dir: Path, entry: Any) -> tuple[str | None, str]:
    """Inductor's code for the entry's region and where it came from, or None and why not."""
    for record in (speed_record(entry)[1], entry.verification or {}):
        for k in ("inductor_code", "inductor_source", "inductor_kernel"):
            if isinstance(record.get(k), str):
                return record[k], f"the entry's {k}"
    key16 = entry.key[:16]
    for path in sorted((cache_dir / "search" / "reference").glob(f"region_{key16}-*.json")):
        try:
            ref = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if ref.get("code"):
            ms = f", {ref['inductor_ms']:.4g} ms" if isinstance(ref.get("inductor_ms"), (int, float)) else ""
            return ref["code"], f"{path.name} ({ref.get('device', '?')}{ms})"
        return None, ref.get("note") or f"{path.name} holds no code"
    return None, "not recorded: the search writes it to search/reference/ when it runs on a GPU"


def region_ops(cache_dir: Path, key16: str, entry: Any | None) -> list[str]:
    if entry is not None:
        return list((entry.region_meta or {}).get("ops", []))
    try:
        return list(read_sidecar(sidecar_path(cache_dir / "regions", key16)).ops or ())
    except UsageError:
        return []


# ---------------------------------------------------------------------------- summarising


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None


@dataclass
class RegionRun:
    key16: str
    ops: list[str]
    outcome: str
    speedup: float | None
    roofline_pct: float | None
    calls: int
    tokens: int
    estimated: bool
    cost: float
    rounds: int
    entry: Any | None


def summarize_run(attempts: list[dict[str, Any]], by_key16: dict[str, Any], cache_dir: Path) -> list[RegionRun]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for a in attempts:
        groups[str(a.get("key16") or str(a.get("key", "?"))[:16])].append(a)
    out = []
    for key16, rows in groups.items():
        entry = by_key16.get(key16)
        accepted = [a for a in rows if a.get("accepted") or a.get("outcome") == "ok"]
        best = max(accepted, key=lambda a: _num(a.get("speedup")) or 0.0, default=None)
        gpu, rec = speed_record(entry) if entry is not None else (None, {})
        if entry is not None:
            outcome = "winner" if entry.status == "served" else f"stored as {entry.status}"
        elif best is not None:
            outcome = "correct, not stored (slower, or gated out)"
        else:
            reasons = Counter(str(a.get("outcome")) for a in rows)
            outcome = "no winner: " + ", ".join(f"{r} x{n}" for r, n in reasons.most_common(3))
        out.append(
            RegionRun(
                key16,
                region_ops(cache_dir, key16, entry),
                outcome,
                _num(rec.get("speedup")) or (_num(best.get("speedup")) if best else None),
                _num(rec.get("roofline_pct")) or (_num(best.get("roofline_pct")) if best else None),
                len(rows),
                sum(int(_num(a.get("tokens_in")) or 0) + int(_num(a.get("tokens_out")) or 0) for a in rows),
                any(a.get("tokens_estimated") for a in rows),
                sum(_num(a.get("cost")) or 0.0 for a in rows),
                max((int(_num(a.get("round")) or 0) for a in rows), default=0),
                entry,
            )
        )
    return sorted(out, key=lambda r: (r.entry is None, -(r.speedup or 0.0)))


# ---------------------------------------------------------------------------- rendering


def _e(x: Any) -> str:
    return html.escape(str(x))


def _fmt(x: float | None, fmt: str, suffix: str = "") -> str:
    return "–" if x is None else format(x, fmt) + suffix


def _table(head: list[str], rows: list[list[str]], numeric: set[int] = frozenset()) -> str:  # type: ignore[assignment]
    th = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f"<td{' class=n' if i in numeric else ''}>{c}</td>" for i, c in enumerate(r)) + "</tr>"
        for r in rows
    )
    return f"<table><tr>{th}</tr>{body}</table>"


def bar_png(
    labels: list[str], values: list[float], title: str, xlabel: str, ref: float | None = None, counts: bool = False
) -> str:
    """A horizontal bar chart as an <img> with an embedded PNG, or a note without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return '<p class="muted">(plots need matplotlib: pip install matplotlib)</p>'
    fig, ax = plt.subplots(figsize=(5.0, 0.3 * len(labels) + 1.3), dpi=110)  # two side by side at 1400 px
    if ref is not None:  # ratios: bars grow from ref on a log axis, so 2x and 0.5x look alike in size
        ax.barh(range(len(values)), [v - ref for v in values], left=ref, color="#4C72B0")
        ax.set_xscale("log", base=2)
        lo, hi = min(values + [0.8 * ref]) / 1.1, max(values + [1.25 * ref]) * 1.4  # room for the labels
        ticks = [t for t in (0.5, 0.8, 0.9, 1, 1.1, 1.25, 1.5, 2, 3) if lo <= t * ref <= hi]
        if len(ticks) < 4 or hi / lo > 8:
            ticks = [2.0**k for k in range(-8, 12) if lo <= 2.0**k * ref <= hi]
            ticks = ticks[:: -(-len(ticks) // 6)]  # at most 6 labels
        ax.set_xlim(lo, hi)
        ax.set_xticks([t * ref for t in ticks], [f"{t * ref:.3g}x" for t in ticks])
        ax.minorticks_off()
        for i, v in enumerate(values):
            ax.text(v, i, f" {v:.2f}x", va="center", fontsize=7)
    else:
        ax.barh(range(len(values)), values, color="#4C72B0")
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.invert_yaxis()
    if ref is not None:
        ax.axvline(ref, color="black", linewidth=0.8)
    if counts:
        ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel, fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return f'<img alt="{_e(title)}" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _when(t: Any) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if _num(t) else "?"


def render_run(run_id: str, attempts: list[dict[str, Any]], by_key16: dict[str, Any], cache_dir: Path) -> str:
    regions = summarize_run(attempts, by_key16, cache_dir)
    first = attempts[0]
    tokens, cost = sum(r.tokens for r in regions), sum(r.cost for r in regions)
    est = " (some estimated)" if any(r.estimated for r in regions) else ""
    times = [t for t in (_num(a.get("time")) for a in attempts) if t]
    parts = [
        f"<h2>Tuning run <code>{_e(run_id)}</code></h2>",
        f"<p>{_e(first.get('provider', '?'))} · model {_e(first.get('model', '?'))} · strategy "
        f"{_e(first.get('strategy', '?'))} · "
        f"{_when(min(times) if times else None)} – {_when(max(times) if times else None)} · "
        f"{len(attempts)} calls · {tokens:,} tokens{est} · ${cost:.3f}</p>",
    ]
    rows = [
        [
            f'<a href="#k-{r.key16}">{r.key16}</a>' if r.entry is not None else r.key16,
            _e(", ".join(r.ops[:8]) + (" …" if len(r.ops) > 8 else "")),
            f'<span class="{"good" if r.outcome == "winner" else "bad"}">{_e(r.outcome)}</span>',
            _fmt(r.speedup, ".2f", "x"),
            _fmt(r.roofline_pct, ".0f", "%"),
            str(r.calls),
            str(r.rounds),
            f"{r.tokens:,}{'~' if r.estimated else ''}",
            f"${r.cost:.3f}",
        ]
        for r in regions
    ]
    parts.append(
        _table(
            ["region", "ops", "outcome", "speedup", "% roofline", "calls", "rounds", "tokens", "cost"],
            rows,
            {3, 4, 5, 6, 7, 8},
        )
    )
    plots = []
    timed = [r for r in regions if r.speedup]
    if timed:
        plots.append(
            bar_png([r.key16 for r in timed], [r.speedup for r in timed], "best speedup over Inductor", "x", 1.0)
        )
    reasons = Counter(str(a.get("outcome")) for a in attempts)
    plots.append(bar_png(list(reasons), list(reasons.values()), "attempt outcomes", "attempts", counts=True))
    per_round: dict[int, float] = defaultdict(float)
    for a in attempts:
        per_round[int(_num(a.get("round")) or 0)] += _num(a.get("cost")) or 0.0
    plots.append(
        bar_png(
            [f"round {k}" for k in sorted(per_round)], [per_round[k] for k in sorted(per_round)], "cost per round", "$"
        )
    )
    parts.append("<div>" + "".join(plots) + "</div>")
    return "\n".join(parts)


def render_entries(view: CacheView, cache_dir: Path) -> str:
    if not view.entries:
        return "<h2>Cache entries</h2><p class='muted'>No entries in this cache.</p>"
    rows, kernels = [], []
    for entry, verdict, hits in view.entries:
        gpu, rec = speed_record(entry)
        prov = entry.provenance or {}
        rows.append(
            [
                f'<a href="#k-{entry.key[:16]}">{entry.key[:16]}</a>',
                _e(entry.status),
                _e(verdict),
                _e(gpu or "–"),
                _fmt(_num(rec.get("speedup")), ".2f", "x"),
                _fmt(_num(rec.get("roofline_pct")), ".0f", "%"),
                _fmt(_num(rec.get("candidate_us")), ".1f"),
                _fmt(_num(rec.get("inductor_us")), ".1f"),
                _e(prov.get("model", "–")),
                str(prov.get("calls", "–")),
                _fmt(_num(prov.get("cost")), ".3f"),
                str(hits),
            ]
        )
        code, where = inductor_kernel(cache_dir, entry)
        theirs = f"<pre>{_e(code)}</pre>" if code else f'<p class="muted">{_e(where)}</p>'
        kernels.append(
            f'<h3 id="k-{entry.key[:16]}">{entry.key[:16]} · '
            f"{_e(', '.join((entry.region_meta or {}).get('ops', [])[:10]))}</h3>"
            f'<div class="pair"><div><b>winner</b> <span class="muted">{_e(entry.entry_id)}</span>'
            f"<pre>{_e(entry.kernel_source)}</pre></div>"
            f'<div><b>Inductor</b> <span class="muted">{_e(where) if code else ""}</span>{theirs}</div></div>'
            f"<details><summary>region file</summary><pre>{_e(entry.region_source)}</pre></details>"
        )
    head = [
        "key",
        "status",
        "verdict here",
        "GPU",
        "speedup",
        "% roofline",
        "kernel µs",
        "Inductor µs",
        "model",
        "calls",
        "cost $",
        "hits",
    ]
    return (
        "<h2>Cache entries</h2>"
        + _table(head, rows, {4, 5, 6, 7, 9, 10, 11})
        + "<h2>Kernels: winner beside Inductor</h2>"
        + "".join(kernels)
    )


def render_bench(path: Path) -> str:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UsageError(
            f"--bench {path}: not readable as JSON ({e}); pass a results file of benchmarks/run.py"
        ) from None
    runs = doc.get("runs", {}) if isinstance(doc, dict) else {}
    devices = sorted({str(r.get("device_name")) for r in runs.values()})
    by_case: dict[tuple[str, str], dict[str, dict[str, Any]]] = defaultdict(dict)
    for r in doc.get("rows", []) if isinstance(doc, dict) else []:
        by_case[(r.get("suite", "?"), r.get("case", "?"))][r.get("mode", "?")] = r
    modes = sorted({m for rows in by_case.values() for m in rows}, key=lambda m: (m.startswith("llm"), m))
    rows, labels, speeds = [], [], []
    for (suite, case), ms in sorted(by_case.items()):
        cells = [_e(f"{suite}/{case}")]
        for m in modes:
            r = ms.get(m)
            ok = r is not None and r.get("status") == "ok" and _num(r.get("median_ms"))
            cells.append(
                _fmt(r["median_ms"], ".4g") if ok else f'<span class="bad">{_e(r.get("status"))}</span>' if r else "–"
            )
        over = (ms.get("llm") or {}).get("speedup_over", {})
        cells += [_fmt(_num(over.get(b)), ".2f", "x") for b in ("inductor", "max-autotune")]
        llm = ms.get("llm") or {}
        cells += [
            _fmt(_num(llm.get("roofline_pct")), ".0f", "%"),
            f"{llm.get('substituted', '–')} / {llm.get('fallbacks', '–')}",
        ]
        rows.append(cells)
        if _num(over.get("inductor")):
            labels.append(case)
            speeds.append(over["inductor"])
    head = [
        "case",
        *[f"{m} ms" for m in modes],
        "llm vs inductor",
        "llm vs max-autotune",
        "llm % roofline",
        "substituted / fallbacks",
    ]
    plot = bar_png(labels, speeds, "llm speedup over Inductor per case", "x", 1.0) if speeds else ""
    return (
        f"<h2>Benchmarks: {_e(path.name)}</h2><p>{_e(', '.join(devices))} · median ms</p>"
        + _table(head, rows, set(range(1, len(head))))
        + plot
    )


def main(args: argparse.Namespace) -> int:
    cfg, _ = Config.load({"cache_dir": args.cache_dir} if args.cache_dir else None)
    cache_dir = cfg.cache_path
    if args.cache_dir and not cache_dir.is_dir():
        raise UsageError(f"--cache-dir {cache_dir}: no such directory")
    attempts_path = Path(args.attempts) if args.attempts else cache_dir / "search" / "attempts.jsonl"
    if args.attempts and not attempts_path.is_file():
        raise UsageError(f"--attempts {attempts_path}: no such file")
    for b in args.bench:
        if not Path(b).is_file():
            raise UsageError(f"--bench {b}: no such file (a results JSON of benchmarks/run.py)")
    attempts, skipped = read_attempts(attempts_path)
    view = read_cache(cfg) if cache_dir.is_dir() else CacheView(notes=[f"no cache at {cache_dir}"])
    by_key16 = {e.key[:16]: e for e, _, _ in view.entries}
    runs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for a in attempts:
        runs[str(a.get("run_id") or "(no run id)")].append(a)
    if args.run:
        runs = {k: v for k, v in runs.items() if k.startswith(args.run)}
    order = sorted(runs, key=lambda k: -max((_num(a.get("time")) or 0.0) for a in runs[k]))
    notes = list(view.notes)
    if skipped:
        notes.append(f"{skipped} unreadable line(s) in {attempts_path} were skipped")
    if not attempts:
        notes.append(f"no tuning attempts recorded in {attempts_path}: run `llm-inductor tune`")
    if view.pending:
        notes.append(
            f"{len(view.pending)} hot region(s) pending, not tuned yet: "
            + ", ".join(p.key[:16] for p in view.pending[:12])
        )
    body = [f"<h1>llm_inductor report</h1><p class='muted'>cache {_e(cache_dir)} · written {_when(time.time())}</p>"]
    body += [f"<p class='muted'>{_e(n)}</p>" for n in notes]
    body += [render_run(k, runs[k], by_key16, cache_dir) for k in order]
    body.append(render_entries(view, cache_dir))
    body += [render_bench(Path(b)) for b in args.bench]
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>llm_inductor report</title>"
        f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>"
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page)
    print(f"wrote {out}: {len(order)} tuning run(s), {len(view.entries)} entries, {len(args.bench)} benchmark file(s)")
    return 0 if (attempts or view.entries or args.bench) else 1
