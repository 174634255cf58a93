"""A bad setting is one clear UsageError naming where it came from and the fix (issue 11, item 7)."""

from __future__ import annotations

import pytest
import torch

import llm_inductor
from llm_inductor._errors import UsageError
from llm_inductor.config import Config


def _first_call(**compile_kwargs):
    torch._dynamo.reset()
    f = torch.compile(torch.nn.Linear(4, 4), backend="llm", **compile_kwargs)
    return f(torch.randn(2, 4))


def test_a_bad_options_value_surfaces_from_dynamo_as_itself_and_blames_options(monkeypatch):
    monkeypatch.setenv("LLM_INDUCTOR_HOT_THRESHOLD", "0.1")
    with pytest.raises(UsageError) as info:
        _first_call(options={"hot_threshold": "lots"})
    msg = str(info.value)
    assert msg.startswith("Bad value for options['hot_threshold']: 'lots'. Expected a number")
    assert "Fix options['hot_threshold']" in msg and "Bad value for LLM_INDUCTOR" not in msg
    assert not isinstance(info.value, torch._dynamo.exc.BackendCompilerFailed)
    files = [entry.path for entry in info.traceback]
    assert not any("output_graph.py" in str(p) or "convert_frame.py" in str(p) for p in files)  # Dynamo's frames cut


def test_a_bad_environment_value_names_the_variable(monkeypatch):
    monkeypatch.setenv("LLM_INDUCTOR_ROUNDS", "abc")
    with pytest.raises(
        UsageError,
        match=r"Bad value for LLM_INDUCTOR_ROUNDS: 'abc'\. Expected an integer .*"
        r"Fix or unset LLM_INDUCTOR_ROUNDS\.",
    ):
        _first_call()


def test_a_value_from_options_is_never_blamed_on_the_environment(monkeypatch):
    with pytest.raises(UsageError) as info:
        Config.load({"mode": "fast"}, env={})
    assert "options['mode']" in str(info.value) and "Valid modes" in str(info.value)
    assert "LLM_INDUCTOR_MODE=" not in str(info.value)
    # A provider name is checked against the registry when a provider is resolved, still blamed on options=
    from llm_inductor.search.llm.providers import select_provider

    with pytest.raises(UsageError, match=r"options\['provider'\].*Registered providers"):
        select_provider(Config.load({"provider": "nope"}, env={})[0])
    with pytest.raises(UsageError, match=r"options\['hot_threshold'\]: 2\.0\. Expected a share in \[0, 1\]"):
        Config.load({"hot_threshold": 2}, env={})
    # options= wins over the environment, so a bad variable it overrides is no error at all
    assert Config.load({"rounds": 3}, env={"LLM_INDUCTOR_ROUNDS": "abc"})[0].rounds == 3


def test_unknown_option_suggests_the_close_name_and_backend_checks_at_construction():
    with pytest.raises(UsageError, match=r"'roundz' \(did you mean 'rounds'\?\)"):
        Config.load({"roundz": 2}, env={})
    with pytest.raises(UsageError, match=r"options\['rounds'\]: 'two'"):
        llm_inductor.backend(rounds="two")  # before any compile
    assert Config.load({"run_max_calls": None, "strict": "yes"}, env={})[0].strict is True


def test_online_tuning_with_an_unknown_provider_fails_when_the_backend_is_made():
    """The tune path registers its check with the compile path: a name tuning cannot use fails at construction."""
    import llm_inductor

    with pytest.raises(UsageError, match=r"options\['provider'\]: 'nope'\. Registered providers"):
        llm_inductor.backend(tune=True, provider="nope")
    llm_inductor.backend(provider="nope")  # no tuning: no provider is resolved, so none is checked
