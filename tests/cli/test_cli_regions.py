"""`llm-inductor regions`: the region map of a script, exit codes per docs/contracts.md, and the entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent(
    """
    import sys, torch
    n = int(sys.argv[1])
    model = torch.nn.Sequential(torch.nn.Linear(16, 24), torch.nn.LayerNorm(24), torch.nn.GELU())
    compiled = torch.compile(model, backend="inductor", mode="max-autotune-no-cudagraphs")
    with torch.no_grad():
        compiled(torch.randn(n, 16))
    """
)


def cli(*args: str, cwd: Path, timeout: float = 300, **env_vars: str) -> subprocess.CompletedProcess:
    """`python -m llm_inductor.cli ARGS` in a fresh process (about 6 s of imports before anything runs)."""
    env = dict(os.environ, LLM_INDUCTOR_MIN_REGION_US="0", **env_vars)
    return subprocess.run(
        [sys.executable, "-m", "llm_inductor.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def cli_here(tmp_path, monkeypatch, capsys):
    """The same command through ``llm_inductor.cli.main`` in this process, with what it printed and its exit code.

    The entry point is ``sys.exit(main())`` and ``regions`` runs the script in the CLI's own process either way,
    so this checks what a fresh process would, without its imports; the tests that need a process of their own
    (the entry point, --timeout's alarm, a bad setting from the environment) still start one.
    """
    from llm_inductor.cli import main
    from llm_inductor.compile import state as _state

    monkeypatch.setenv("LLM_INDUCTOR_MIN_REGION_US", "0")

    def run(*args: str, cwd: Path = tmp_path) -> subprocess.CompletedProcess:
        monkeypatch.chdir(cwd)
        _state.export_dir = None  # as in a fresh process: an earlier call's --export does not carry over
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(list(args), code, out, err)

    return run


def test_regions_maps_and_exports_every_compiled_graph(tmp_path, cli_here):
    (tmp_path / "train.py").write_text(SCRIPT)
    out = cli_here("regions", "--json", "--export", "exported", "train.py", "6")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    (graph,) = report["graphs"]
    assert graph["kind"] == "inference" and len(graph["regions"]) == 2
    norm = next(r for r in graph["regions"] if "var_mean" in r["ops"])
    assert norm["shapes"] == ["float32[6,24]", "float32[24]", "float32[24]"] and norm["status"] == "miss"
    assert abs(sum(r["share"] for r in graph["regions"]) - 1) < 1e-6
    exported = sorted(p.name for p in (tmp_path / "exported").iterdir())
    assert len(exported) == 4 and all(p.startswith("region_") for p in exported)

    text = cli_here("regions", "train.py", "6")
    assert text.returncode == 0
    assert "graph 0 (inference): 2 region(s)" in text.stdout and norm["key16"] in text.stdout


@pytest.mark.parametrize(
    "script, args, message",
    [
        (None, ["missing.py"], "script not found"),
        ("raise ValueError('bad input')\n", ["bad.py"], "ValueError: bad input"),
        ("import sys; sys.exit(4)\n", ["bad.py"], "exited with status 4"),
    ],
)
def test_bad_scripts_exit_2_with_a_clear_message(tmp_path, cli_here, script, args, message):
    if script:
        (tmp_path / "bad.py").write_text(script)
    out = cli_here("regions", *args)
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr


def test_timeout_stops_a_long_script_and_reports_what_compiled(tmp_path, cli_here):
    (tmp_path / "slow.py").write_text(SCRIPT + "\nimport time\ntime.sleep(600)\n")
    # The alarm must fire after the compile and before the sleep ends, and each second of --timeout is a second
    # this test waits (30: a margin for a loaded CI box). The same graph compiled here first leaves Inductor's cache
    # warm (this test's, which the process below shares), so the compile there takes about 4 s instead of 10 s cold
    # (2 cores). The process gets a kernel cache of its own: AOTAutograd's cache then misses (its key names the
    # cache) and the region pass runs.
    (tmp_path / "warm.py").write_text(SCRIPT)
    warm = cli_here("regions", "--json", "warm.py", "3")
    assert warm.returncode == 0 and json.loads(warm.stdout)["finished"] is True, warm.stderr
    out = cli(
        "regions",
        "--timeout",
        "30",
        "--json",
        "slow.py",
        "3",
        cwd=tmp_path,
        timeout=240,
        LLM_INDUCTOR_CACHE_DIR=str(tmp_path / "llm_cache_slow"),
    )
    assert out.returncode == 0, out.stderr
    assert "ran past --timeout" in out.stderr
    assert json.loads(out.stdout)["finished"] is False and len(json.loads(out.stdout)["graphs"]) == 1


@pytest.mark.parametrize("catch", ["Exception", "BaseException"])
def test_timeout_holds_when_the_script_swallows_the_first_alarm(tmp_path, catch):
    """The backend, and user code, catch Exception (a failed compile falls back to Inductor): the deadline must not
    be one. A handler that catches even BaseException delays the stop by the alarm's one-second repeat."""
    from llm_inductor._cli_regions import run_script

    (tmp_path / "swallow.py").write_text(
        f"import time\ntry:\n    time.sleep(60)\nexcept {catch}:\n    pass\ntime.sleep(60)\n"
    )
    start = time.monotonic()
    assert run_script(tmp_path / "swallow.py", [], {}, timeout=0.5) is False
    assert time.monotonic() - start < 10


def test_bad_setting_is_a_usage_error(tmp_path):
    (tmp_path / "ok.py").write_text("print('hi')\n")
    env = dict(os.environ, LLM_INDUCTOR_MODE="fastest")
    out = subprocess.run(
        [sys.executable, "-m", "llm_inductor.cli", "regions", "ok.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2 and "Valid modes" in out.stderr


def test_backend_llm_is_registered_by_the_entry_point(tmp_path):
    """A script that never imports llm_inductor gets the backend by name."""
    code = textwrap.dedent(
        """
        import sys, torch
        assert "llm_inductor" not in sys.modules
        f = torch.compile(lambda x: torch.softmax(x * 2, -1), backend="llm")
        x = torch.randn(3, 5)
        torch.testing.assert_close(f(x), torch.softmax(x * 2, -1))
        import llm_inductor
        print(llm_inductor.stats()["graphs"], "llm" in torch._dynamo.list_backends())
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["1", "True"]


BLOCKS = textwrap.dedent(
    """
    import torch
    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin, self.norm = torch.nn.Linear(16, 16), torch.nn.LayerNorm(16)
        def forward(self, x):
            return torch.nn.functional.gelu(self.norm(self.lin(x)))
    model = torch.nn.Sequential(*[Block() for _ in range(3)])
    with torch.no_grad():
        torch.compile(model)(torch.randn(6, 16))
    """
)


def test_a_repeated_layer_is_one_row_with_its_count_and_summed_share(tmp_path, cli_here):
    """Three identical blocks: each distinct region once, ×3, share summed over occurrences, in JSON and text."""
    (tmp_path / "blocks.py").write_text(BLOCKS)
    out = cli_here("regions", "--json", "blocks.py")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    (graph,) = report["graphs"]
    assert report["stats"]["regions"] == 6 and len(graph["regions"]) == 2
    for region in graph["regions"]:
        assert region["count"] == 3 and len(region["occurrences"]) == 3 and region["hot"]
        assert region["share"] == pytest.approx(sum(o["share"] for o in region["occurrences"]))
        assert region["est_us"] == pytest.approx(3 * region["occurrences"][0]["est_us"])
    assert sum(r["share"] for r in graph["regions"]) == pytest.approx(1)

    text = cli_here("regions", "blocks.py")
    assert text.returncode == 0, text.stderr
    assert "graph 0 (inference): 6 region(s), 2 distinct, 0 substituted" in text.stdout
    for region in graph["regions"]:
        (line,) = [line for line in text.stdout.splitlines() if region["key16"] in line]
        assert " ×3 " in line and f"{region['share']:.1%}" in line
    assert "share and est µs are summed" in text.stdout


def test_fold_keeps_first_appearance_and_separates_what_differs():
    from llm_inductor._cli_regions import fold, format_reports
    from llm_inductor.compile import state as _state

    def row(key16, status="miss", hot=True, share=0.1):
        key = None if key16 == "-" else key16 * 4
        return _state.RegionRow(key16, ["add"], ["float32[4]"], "add", 1.0, share, hot, status, key=key)

    rows = [
        row("b"),
        row("a"),
        row("b"),
        row("a", status="hit"),
        row("b"),
        row("-", "bypass: x"),
        row("-", "bypass: x"),
    ]
    groups = fold(rows)
    expected = [("b", "miss", 3), ("a", "miss", 1), ("a", "hit", 1), ("-", "bypass: x", 2)]
    assert [(g[0].key16, g[0].status, len(g)) for g in groups] == expected
    text = format_reports([_state.GraphReport("forward", rows)])
    assert text.count(" ×3 ") == 1 and " 30.0% " in text and "7 region(s), 4 distinct" in text


ECHO = "import json, sys\nopen('argv.json', 'w').write(json.dumps(sys.argv[1:]))\n"


def test_own_option_after_the_script_warns_and_goes_to_the_script(tmp_path, cli_here):
    (tmp_path / "echo.py").write_text(ECHO)
    out = cli_here("regions", "--timeout", "60", "echo.py", "6", "--export", "out", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads((tmp_path / "argv.json").read_text()) == ["6", "--export", "out", "--json"]
    assert not (tmp_path / "out").exists() and out.stdout.strip() == "no graph was compiled"
    (warning,) = [line for line in out.stderr.splitlines() if line.startswith("llm-inductor: warning")]
    assert "--export out, --json after the script are passed to echo.py, not to regions" in warning
    assert "For regions, run: llm-inductor regions --timeout 60 --export out --json echo.py 6\n" in out.stderr

    out = cli_here("regions", "echo.py", "--export=out")
    assert out.returncode == 0 and "run: llm-inductor regions --export=out echo.py\n" in out.stderr


def test_double_dash_marks_the_script_and_the_scripts_own_double_dash_stays(tmp_path, cli_here):
    (tmp_path / "echo.py").write_text(ECHO)
    out = cli_here("regions", "--json", "--", "echo.py", "--export", "out")
    assert out.returncode == 0 and "llm-inductor: warning" not in out.stderr, out.stderr
    assert json.loads(out.stdout)["graphs"] == [] and json.loads((tmp_path / "argv.json").read_text()) == [
        "--export",
        "out",
    ]
    out = cli_here("regions", "echo.py", "--", "--json")
    assert out.returncode == 0 and "llm-inductor: warning" not in out.stderr, out.stderr
    assert json.loads((tmp_path / "argv.json").read_text()) == ["--", "--json"]
    out = cli_here("regions", "--json", "--")
    assert out.returncode == 2 and "regions needs a script" in out.stderr
