"""Static policy: the allowlist admits real wrappers and names what it rejects."""

from __future__ import annotations

import pytest

from llm_inductor.verify.policy import check_source
from support.paths import KERNELS

HEAD = "import torch\nimport triton\nimport triton.language as tl\n"
KERNEL = """
@triton.jit
def _k(x_ptr, out_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(out_ptr + offs, tl.load(x_ptr + offs, mask=offs < n), mask=offs < n)
"""
WRAPPER = """
def forward(x):
    out = torch.empty_like(x)
    _k[(triton.cdiv(x.numel(), 128),)](x, out, x.numel(), BLOCK=128)
    return out
"""


def codes(source: str) -> list[str]:
    return [v.code for v in check_source(source)]


@pytest.mark.parametrize("path", sorted(KERNELS.glob("*.py")), ids=lambda p: p.stem)
def test_hand_written_kernels_are_admitted(path):
    assert check_source(path.read_text()) == []


def test_minimal_candidate_is_admitted():
    assert check_source(HEAD + KERNEL + WRAPPER) == []


def test_autotune_heuristics_libdevice_and_grid_lambda_are_admitted():
    src = (
        HEAD
        + """from triton.language.extra import libdevice
import math

CONFIGS = [triton.Config({"BLOCK": 128}, num_warps=4), triton.Config({"BLOCK": 256}, num_warps=8)]
LOG2E = 1.4426950408889634


@triton.autotune(configs=CONFIGS, key=["n"])
@triton.heuristics({"EVEN": lambda args: args["n"] % 128 == 0})
@triton.jit
def _k(x_ptr, out_ptr, n, BLOCK: tl.constexpr, EVEN: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    x = tl.load(x_ptr + offs, mask=offs < n).to(tl.float32)
    tl.store(out_ptr + offs, libdevice.exp2(x * LOG2E).to(out_ptr.dtype.element_ty), mask=offs < n)


def forward(x):
    out = torch.empty_strided(x.shape, x.stride(), dtype=x.dtype, device=x.device)
    grid = lambda meta: (triton.cdiv(x.numel(), meta["BLOCK"]),)
    with torch.cuda.device(x.device):
        _k[grid](x.view(-1), out.view(-1), x.numel())
    return out.reshape(x.shape)
"""
    )
    assert check_source(src) == []


@pytest.mark.parametrize(
    "snippet, code",
    [
        ("import os\n", "policy:process"),
        ("import subprocess\n", "policy:process"),
        ("import socket\n", "policy:network"),
        ("import urllib.request\n", "policy:network"),
        ("import threading\n", "policy:thread"),
        ("import ctypes\n", "policy:native_code"),
        ("from torch.utils.cpp_extension import load_inline\n", "policy:native_code"),
        ("import numpy\n", "policy:import"),
        ("import pickle\n", "policy:file"),
        ("from triton.language import inline_asm_elementwise\n", "policy:inline_asm"),
        ("torch.allclose = lambda *a, **k: True\n", "policy:monkeypatch"),
        ("_cache = {}\n", "policy:global_state"),
        ("_seen = []\n", "policy:global_state"),
        ("print('hello at import')\n", "policy:module_code"),
        ("class Helper:\n    pass\n", "policy:class"),
        ("try:\n    import torch\nexcept ImportError:\n    pass\n", "policy:try_except"),
    ],
)
def test_module_level_violations_are_named(snippet, code):
    assert code in codes(HEAD + snippet + KERNEL + WRAPPER)


@pytest.mark.parametrize(
    "body, code",
    [
        ("    open('/etc/passwd').read()\n", "policy:file"),
        ("    exec('1')\n", "policy:exec"),
        ("    eval('1')\n", "policy:exec"),
        ("    __import__('os')\n", "policy:exec"),
        ("    compile('1', 'f', 'eval')\n", "policy:exec"),
        ("    getattr(torch, 'soft' + 'max')(x, -1)\n", "policy:reflection"),
        ("    setattr(torch, 'allclose', None)\n", "policy:monkeypatch"),
        ("    x.__class__\n", "policy:reflection"),
        ("    torch.cuda.Stream()\n", "policy:stream"),
        ("    torch.cuda.Event(enable_timing=True)\n", "policy:stream"),
        ("    torch.cuda.synchronize()\n", "policy:stream"),
        ("    torch.softmax(x, -1)\n", "policy:torch_attr"),
        ("    torch.Tensor.exp(x)\n", "policy:torch_attr"),
        ("    torch.nn.functional.gelu(x)\n", "policy:torch_attr"),
        ("    torch.ops.aten.exp(x)\n", "policy:torch_compute"),
        ("    x.sum()\n", "policy:attr"),
        ("    x.exp_()\n", "policy:attr"),
        ("    triton.testing.do_bench(lambda: None)\n", "policy:monkeypatch"),
        ("    global _k\n", "policy:global_state"),
        ("    forward.cache = x\n", "policy:monkeypatch"),
        ("    x.foo = 1\n", "policy:setattr"),
        ("    import os\n", "policy:import"),
        ("    try:\n        pass\n    except Exception:\n        pass\n", "policy:try_except"),
    ],
)
def test_wrapper_violations_are_named(body, code):
    wrapper = WRAPPER.replace("    out = torch.empty_like(x)\n", body + "    out = torch.empty_like(x)\n")
    assert code in codes(HEAD + KERNEL + wrapper)


def test_torch_inside_a_kernel_is_rejected():
    kernel = KERNEL.replace("    tl.store(", "    torch.exp(x_ptr)\n    tl.store(")
    assert "policy:torch_in_kernel" in codes(HEAD + kernel + WRAPPER)


def test_inline_asm_through_tl_is_rejected():
    kernel = KERNEL.replace(
        "    tl.store(",
        '    y = tl.inline_asm_elementwise("mov.b32 $0, $1;", "=r,r", [offs], dtype=tl.int32, is_pure=True, pack=1)\n'
        "    tl.store(",
    )
    assert "policy:inline_asm" in codes(HEAD + kernel + WRAPPER)


def test_interpreter_handles_are_not_reachable_from_kernels():
    kernel = KERNEL.replace("    tl.store(", "    h = x_ptr.handle\n    tl.store(")
    assert "policy:attr" in codes(HEAD + kernel + WRAPPER)


def test_a_candidate_needs_a_kernel_and_a_forward():
    assert "policy:no_kernel" in codes(HEAD + WRAPPER)
    assert "policy:no_forward" in codes(HEAD + KERNEL)


def test_syntax_error_is_a_violation_with_its_line():
    (v,) = check_source("import torch\ndef forward(x:\n    return x\n")
    assert v.code == "policy:syntax" and v.line == 2


def test_only_triton_decorators():
    src = HEAD + "import functools\n" + KERNEL + "@functools.lru_cache\n" + WRAPPER.lstrip()
    assert "policy:import" in codes(src) and "policy:decorator" in codes(src)


def test_mutating_a_module_level_config_list_is_global_state():
    src = (
        HEAD
        + 'CONFIGS = [triton.Config({"BLOCK": 128})]\n'
        + KERNEL
        + WRAPPER.replace("    return out", "    CONFIGS.append(out)\n    return out")
    )
    assert "policy:global_state" in codes(src)


def test_violations_carry_lines_and_messages():
    src = HEAD + "import os\n" + KERNEL + WRAPPER
    (v,) = [v for v in check_source(src) if v.code == "policy:process"]
    assert v.line == 4 and "os" in v.message and str(v).startswith("line 4:")


def test_tutorial_idioms_are_admitted_and_state_still_caught():
    """`def grid(meta)` and a local list are fine; a nested def with a tensor default or a module list is not."""
    from llm_inductor.verify.policy import check_source

    src = (
        "import torch\nimport triton\nimport triton.language as tl\n\n"
        "@triton.jit\ndef k(x_ptr, n, B: tl.constexpr):\n"
        "    o = tl.arange(0, B)\n    tl.store(x_ptr + o, tl.load(x_ptr + o, mask=o < n), mask=o < n)\n\n"
        "def forward(x):\n    outs = []\n    def grid(meta):\n        return (triton.cdiv(x.numel(), meta['B']),)\n"
        "    y = torch.empty_like(x)\n    k[grid](y, x.numel(), B=128)\n    outs.append(y)\n    return outs[0]\n"
    )
    assert check_source(src) == []
    stateful = src.replace("def grid(meta):", "def grid(meta, c=torch.zeros(1)):")
    assert [v.code for v in check_source(stateful)] == ["policy:module_code"]
    hidden = src.replace("def forward(x):\n    outs = []", "OUTS = []\n\ndef forward(x):\n    outs = OUTS")
    assert "policy:global_state" in [v.code for v in check_source(hidden)]


ASM = 'inline_asm_elementwise("mov.b32 $0, $1;", "=r,r", [offs], dtype=tl.int32, is_pure=True, pack=1)'


@pytest.mark.parametrize(
    "head, line, code",
    [  # issue 11, item 9: attributes are judged by what they resolve to, not by their spelling
        ("", f"    y = tl.core.{ASM}\n", "policy:inline_asm"),
        ("", f"    y = triton.language.core.{ASM}\n", "policy:inline_asm"),
        ("", "    t = tl.extra.cuda.globaltimer()\n", "policy:inline_asm"),
        ("", "    t = triton.language.extra.cuda.smid()\n", "policy:inline_asm"),
        ("import triton.language.extra.cuda as c\n", "    t = c.globaltimer()\n", "policy:inline_asm"),
        ("import triton.language.extra.cuda.utils as u\n", "    t = u.globaltimer()\n", "policy:inline_asm"),
        ("from triton.language import core\n", f"    y = core.{ASM}\n", "policy:inline_asm"),
        ("from triton.language.extra.cuda import globaltimer\n", "    t = globaltimer()\n", "policy:inline_asm"),
        ("from triton.language.core import inline_asm_elementwise\n", "    pass\n", "policy:import"),
        ("", f"    c = tl.core\n    y = c.{ASM}\n", "policy:inline_asm"),  # an alias assigned in the kernel
        ("", "    a = tl.extra\n    b = a.cuda\n    t = b.globaltimer()\n", "policy:inline_asm"),  # alias of an alias
        ("CORE = tl.core\n", f"    y = CORE.{ASM}\n", "policy:inline_asm"),  # an alias assigned at module level
        ("", "    t = tl.extra.cuda.utils.num_warps()\n", "policy:inline_asm"),
        ("", "    f = tl.core.extern_elementwise\n", "policy:inline_asm"),
    ],
)
def test_forbidden_triton_objects_are_caught_under_any_name(head, line, code):
    kernel = KERNEL.replace("    tl.store(", line + "    tl.store(")
    assert code in codes(HEAD + head + kernel + WRAPPER)


@pytest.mark.parametrize(
    "body, code",
    [  # modules and functions from outside triton, reachable as attributes of triton.language
        ("    tl.core.builtins.exec('import os')\n", "policy:exec"),
        ("    triton.language.extra.pkgutil.resolve_name('os')\n", "policy:import"),
        ("    tl.core.inspect.stack()\n", "policy:reflection"),
    ],
)
def test_foreign_modules_reached_through_triton_language_are_named(body, code):
    wrapper = WRAPPER.replace("    out = torch.empty_like(x)\n", body + "    out = torch.empty_like(x)\n")
    assert code in codes(HEAD + KERNEL + wrapper)


def test_libdevice_stays_allowed_under_every_spelling():
    for head, call in [
        ("from triton.language.extra import libdevice\n", "libdevice.exp"),
        ("import triton.language.extra.cuda as c\n", "c.libdevice.exp"),
        ("", "tl.extra.cuda.libdevice.exp"),
        ("", "triton.language.extra.libdevice.exp"),
    ]:
        kernel = KERNEL.replace(
            "tl.load(x_ptr + offs, mask=offs < n)", f"{call}(tl.load(x_ptr + offs, mask=offs < n).to(tl.float32))"
        )
        assert check_source(HEAD + head + kernel + WRAPPER) == [], call


HEURISTIC_KERNEL = KERNEL.replace("@triton.jit\n", "@triton.heuristics({'EVEN': HEURISTIC})\n@triton.jit\n").replace(
    "BLOCK: tl.constexpr)", "BLOCK: tl.constexpr, EVEN: tl.constexpr)"
)


@pytest.mark.parametrize(
    "heuristic, code",
    [  # issue 11, item 3: state that survives a call, in callables Triton calls at every launch
        ("lambda args, _n=[]: _n.append(0) or len(_n) < 4", "policy:global_state"),  # a mutable default
        ("lambda args, _n={}: len(_n) < 4", "policy:global_state"),
        ("(lambda seen: lambda args: seen.append(0) or len(seen) < 4)([])", "policy:module_code"),  # a closure
        ("make_heuristic()", "policy:module_code"),  # a factory run at import
        ("(_n := []) and (lambda args: len(_n) < 4)", "policy:global_state"),  # := binds a module-level name
        ("lambda args: list.append(CONFIGS, 0) or len(CONFIGS) < 4", "policy:global_state"),
    ],
)
def test_callables_cannot_keep_state_across_calls(heuristic, code):
    src = HEAD + "CONFIGS = [triton.Config({})]\n" + HEURISTIC_KERNEL.replace("HEURISTIC", heuristic) + WRAPPER
    assert code in codes(src), codes(src)


def test_pure_callables_and_tutorial_idioms_stay_admitted():
    src = HEAD + HEURISTIC_KERNEL.replace("HEURISTIC", "lambda args: args['n'] % 128 == 0") + WRAPPER
    assert check_source(src) == []
    tuned = (
        HEAD
        + """
@triton.autotune(configs=[triton.Config({"BLOCK": b}, num_warps=w, pre_hook=lambda nargs: nargs["out_ptr"].zero_())
                          for b in (64, 128) for w in (4, 8)], key=["n"], reset_to_zero=["out_ptr"],
                 prune_configs_by={"early_config_prune": lambda configs, nargs, **kw: configs[:1]})
"""
        + KERNEL.lstrip("\n")
        + WRAPPER
    )
    assert check_source(tuned) == []


@pytest.mark.parametrize(
    "wrapper_line, code",
    [  # mutation of what outlives the call, however it is reached
        ("    c = CONFIGS\n    c.append(triton.Config({}))\n", "policy:global_state"),  # an alias of a global
        ("    c = CONFIGS\n    c[0] = None\n", "policy:global_state"),
        ("    x[0] = 0\n", "policy:global_state"),  # a parameter: whatever the caller passed
        ("    seen = max(CONFIGS, [])\n    seen.append(1)\n", "policy:global_state"),
    ],
)
def test_mutating_objects_the_call_did_not_build_is_global_state(wrapper_line, code):
    wrapper = WRAPPER.replace("    out = torch.empty_like(x)\n", wrapper_line + "    out = torch.empty_like(x)\n")
    assert code in codes(HEAD + "CONFIGS = [triton.Config({})]\n" + KERNEL + wrapper)


def test_a_prune_function_cannot_grow_tritons_config_list():
    # early_config_prune receives the Autotuner's own list, which lives as long as the kernel.
    src = (
        HEAD
        + """
def _prune(configs, nargs, **kw):
    configs.append(configs[0])
    return configs[len(configs) > 8:][:1]


@triton.autotune(configs=[triton.Config({"BLOCK": 128})], key=["n"], prune_configs_by={"early_config_prune": _prune})
"""
        + KERNEL.lstrip("\n")
        + WRAPPER
    )
    assert "policy:global_state" in codes(src)


def test_the_contracts_rule_for_decorator_arguments_matches_the_policy():
    """The prompt's contract tells how to write autotune configs (every round-1 answer for the models suite
    called a config helper in its decorator): what it prescribes passes, what it forbids is rejected."""
    from llm_inductor.search.llm.prompts import template

    contract = template("contract").template
    assert "Decorator arguments run at import" in contract and "a comprehension over literals" in contract
    autotuned = KERNEL.replace(
        "@triton.jit",
        '@triton.autotune(configs=[triton.Config({"BLOCK": b}, num_warps=w) for b in (64, 128) for w in (4, 8)],'
        ' key=["n"])\n@triton.jit',
    )
    wrapper = WRAPPER.replace("(triton.cdiv(x.numel(), 128),)", 'lambda meta: (triton.cdiv(x.numel(), meta["BLOCK"]),)')
    wrapper = wrapper.replace(", BLOCK=128)", ")")
    assert check_source(HEAD + autotuned + wrapper) == []
    helper = "def _configs():\n    return [triton.Config({'BLOCK': 64})]\n"
    assert codes(HEAD + helper + autotuned.replace("configs=[", "configs=_configs() or [") + wrapper) == [
        "policy:module_code"
    ]
    listed = "_CONFIGS = [triton.Config({'BLOCK': 64})]\n"  # a literal list of configs: a constant
    assert codes(HEAD + listed + autotuned.replace("configs=[", "configs=_CONFIGS or [") + wrapper) == []
    built = "_CONFIGS = [triton.Config({'BLOCK': b}) for b in (64, 128)]\n"  # built at module level: not one
    assert codes(HEAD + built + autotuned.replace("configs=[", "configs=_CONFIGS or [") + wrapper) == [
        "policy:global_state"
    ]
