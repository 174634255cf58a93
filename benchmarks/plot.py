"""Speedup of llm per case over Inductor and over max-autotune, as a PNG.

    python benchmarks/plot.py benchmarks/results/2026-11-25-h200.json -o benchmarks/results/2026-11-25-h200.png

One horizontal bar pair per case (log scale, 1x marked): right of the line llm is
faster. A case without an llm speedup (failed, incorrect, not run) is drawn as
an empty slot labelled with its status, so missing cases stay visible.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common  # noqa: E402
from benchmarks.table import cases  # noqa: E402

BASELINES = (("inductor", "#4C72B0"), ("max-autotune", "#DD8452"))


def series(doc: dict[str, Any], llm: str = "llm") -> list[tuple[str, dict[str, float], str]]:
    """[(case label, {baseline: speedup}, note)] for every case in the file."""
    out = []
    for suite, name, rows in cases(doc):
        r = rows.get(llm)
        speeds = {b: v for b, v in (r or {}).get("speedup_over", {}).items() if b in dict(BASELINES)}
        if r is None:
            note = f"{llm} not run"
        elif r.get("status") != common.OK:
            # A failure before any mode ran (building the model, its reference) is the case's, not llm's.
            whose = "case" if r.get("stage") in ("build", "reference") else llm
            note = f"{whose} {r.get('status')}" + (f" at {r['stage']}" if r.get("stage") else "")
        else:
            note = "" if speeds else "no Inductor or max-autotune row to compare with"
        out.append((f"{suite}/{name}", speeds, note))
    return out


def plot(doc: dict[str, Any], path: str | Path, llm: str = "llm") -> Path:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        from llm_inductor._errors import UsageError

        raise UsageError("plotting needs matplotlib: pip install matplotlib") from None
    data = series(doc, llm)
    fig, ax = plt.subplots(figsize=(9, 0.42 * len(data) + 1.6), dpi=120)
    height, labeled = 0.38, set()
    for i, (_label, speeds, note) in enumerate(reversed(data)):
        for j, (base, color) in enumerate(BASELINES):
            if base in speeds:
                y, x = i + (j - 0.5) * height, math.log2(speeds[base])
                ax.barh(y, x, height, color=color, label=None if base in labeled else f"over {base}")
                labeled.add(base)
                ax.text(x, y, f" {speeds[base]:.2f}x", va="center", fontsize=7)
        if note:
            ax.text(0.02, i, f"  {note}", va="center", fontsize=8, color="#a33")
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(data)), [d[0] for d in reversed(data)], fontsize=8)
    logs = [math.log2(v) for _, sp, _ in data for v in sp.values()]
    lo, hi = min(logs + [-0.5]) - 0.15, max(logs + [0.5]) + 0.3
    step = max(0.5, math.ceil((hi - lo) / 8))  # log2 units: at most ~9 labels
    ticks = [t * step for t in range(math.floor(lo / step), math.ceil(hi / step) + 1)]
    ax.set_xticks(ticks, [f"{2**t:.3g}x" for t in ticks])
    ax.set_xlim(lo, hi)
    ax.set_ylim(-0.6, len(data) - 0.4)
    ax.set_xlabel(f"speedup of {llm} (baseline median / {llm} median; right of 1x: {llm} faster)")
    devices = sorted({info.get("device_name", "?") for info in doc["runs"].values()})
    ax.set_title(f"{llm} against Inductor and max-autotune · {', '.join(devices)}", fontsize=10)
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, loc="lower right", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results")
    p.add_argument("-o", "--out", required=True, help="PNG path")
    p.add_argument("--llm-mode", default="llm", choices=tuple(common.LLM_MODES))
    args = p.parse_args(argv)
    from llm_inductor._errors import UsageError

    try:
        print(plot(common.load(args.results), args.out, args.llm_mode))
    except UsageError as e:
        print(f"benchmarks/plot.py: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
