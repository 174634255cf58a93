"""Which entries may be served here: signatures, versions, GPU model, policy, revocations.

``Trust.judge(entry)`` returns a ``Verdict`` and never raises. Three outcomes:
  served     trusted signature, same torch and triton major.minor, this GPU model
             ("cpu" for CPU entries), static policy passed, status served, not revoked;
  a miss     anything else that ``llm-inductor cache verify`` can fix by verifying on
             this machine and re-signing (unsigned, unknown key, other versions or GPU);
  refused    tampered (bad signature) or failing the static policy: never imported.
Revoked entries and entries of another status are misses that verify cannot fix.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterable

from llm_inductor._errors import LLMInductorError
from llm_inductor.cache import sign
from llm_inductor.cache.entry import Entry

log = logging.getLogger(__name__)

FIXABLE = frozenset({"unsigned", "untrusted_key", "torch_version", "triton_version", "gpu_model", "versions_unknown"})
REFUSED = frozenset({"tampered", "policy"})


@dataclass(frozen=True)
class Verdict:
    reason: str  # "served" or a reason code
    detail: str = ""

    @property
    def servable(self) -> bool:
        return self.reason == "served"

    @property
    def fixable(self) -> bool:
        """``llm-inductor cache verify`` can make it servable here."""
        return self.reason in FIXABLE

    @property
    def refused(self) -> bool:
        return self.reason in REFUSED

    def __str__(self) -> str:
        return self.reason if not self.detail else f"{self.reason}: {self.detail}"


# ---------------------------------------------------------------------------- this machine


def major_minor(version: str | None) -> tuple[int, int] | None:
    m = re.match(r"\s*(\d+)\.(\d+)", str(version or ""))
    return (int(m.group(1)), int(m.group(2))) if m else None


_env_lock = threading.Lock()
_env: dict[str, str] = {}


def current_versions(device: str = "cuda") -> dict[str, str]:
    """{"torch", "triton", "gpu"} of this process; gpu is "cpu" for CPU work or without CUDA."""
    with _env_lock:
        if not _env:
            import torch

            _env["torch"] = torch.__version__
            try:  # metadata, not `import triton`: Triton must first be imported after TRITON_INTERPRET is set
                _env["triton"] = metadata.version("triton")
            except metadata.PackageNotFoundError:
                _env["triton"] = "none"
            _env["cuda_name"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    gpu = "cpu" if not str(device).startswith("cuda") else _env["cuda_name"]
    return {"torch": _env["torch"], "triton": _env["triton"], "gpu": gpu}


# ---------------------------------------------------------------------------- revocations


class Revocations:
    """Targets never served: "key:<digest>" or "hash:<content_hash>"; gathered from every tier."""

    def __init__(self, targets: Iterable[str] = ()) -> None:
        self.targets: dict[str, str] = {}  # target → reason
        self.update((t, "") for t in targets)

    def update(self, items: Iterable[tuple[str, str]]) -> None:
        for target, reason in items:
            if valid_target(target):
                self.targets.setdefault(target, reason)

    def match(self, entry: Entry) -> str | None:
        for target in (f"key:{entry.key}", f"hash:{entry.content_hash}"):
            if target in self.targets:
                return target
        return None


def valid_target(target: str) -> bool:
    return bool(re.fullmatch(r"(key|hash):[0-9a-f]{64}", str(target)))


# ---------------------------------------------------------------------------- keys


def bundled_keys_dir() -> Path:
    import llm_inductor

    return Path(llm_inductor.__file__).parent / "keys"


def load_trusted(paths: Iterable[str], extra: Iterable[sign.PublicKey] = ()) -> dict[str, sign.PublicKey]:
    """Fingerprint → key, from files and folders (*.pub, and .key files named directly) plus the bundled keys.

    An unreadable key is skipped with a warning: the compile path must not fail on it.
    """
    files: list[Path] = sorted(bundled_keys_dir().glob("*.pub"))
    for p in paths:
        path = Path(p).expanduser()
        files += sorted(path.glob("*.pub")) if path.is_dir() else [path]
    keys = {k.fingerprint: k for k in extra}
    for f in files:
        try:
            k = sign.load_public(f)
        except LLMInductorError as e:
            log.warning("llm_inductor: skipping a trusted key: %s", e)
            continue
        keys.setdefault(k.fingerprint, k)
    return keys


# ---------------------------------------------------------------------------- policy


def _policy() -> Callable[[str], list[Any]] | None:
    try:
        from llm_inductor.verify.policy import check_source
    except ImportError as e:
        _say_once(("policy-missing",), logging.WARNING,
                  "llm_inductor: the static policy (llm_inductor.verify.policy) cannot be imported (%s); "
                  "no cached kernel is served until it can", e)
        return None
    return check_source


# ---------------------------------------------------------------------------- judging


@dataclass
class Trust:
    keys: dict[str, sign.PublicKey]
    revoked: Revocations = field(default_factory=Revocations)
    policy: Callable[[str], list[Any]] | None | str = "auto"  # "auto": llm_inductor.verify.policy
    _memo: dict[str, Verdict] = field(default_factory=dict)

    def judge(self, entry: Entry) -> Verdict:
        try:
            target = self.revoked.match(entry)  # outside the memo: revocations arrive while a process runs
            if target is not None:
                why = self.revoked.targets[target] or "no reason given"
                return Verdict("revoked", f"{target.split(':')[0]} revoked ({why})")
            ident = f"{entry.content_hash}:{entry.signer}:{entry.signature}"
            hit = self._memo.get(ident)
            if hit is None:
                hit = self._judge(entry)
                if hit.reason != "policy_unavailable":
                    self._memo[ident] = hit
            return hit
        except Exception as e:  # a judge that raises would break the compile path
            return Verdict("malformed", f"{type(e).__name__}: {e}")

    def _judge(self, entry: Entry) -> Verdict:
        if entry.status != "served":
            return Verdict("status", entry.status)
        if not entry.signature or not entry.signer:
            return Verdict("unsigned", "no signature")
        if not sign.available():
            return Verdict("no_crypto", "signatures cannot be checked: pip install 'llm-inductor[signing]'")
        key = self.keys.get(entry.signer)
        if key is None:
            return Verdict("untrusted_key", f"signed by {entry.signer[:16]}, not a trusted key")
        try:
            good = key.verify(bytes.fromhex(entry.signature), entry.content_hash)
        except ValueError:
            good = False
        if not good:
            return Verdict("tampered", f"the signature of {key.source} does not match the content")
        verdict = self._versions(entry)
        if verdict is not None:
            return verdict
        check = _policy() if self.policy == "auto" else self.policy
        if check is None:
            return Verdict("policy_unavailable", "llm_inductor.verify.policy is missing")
        violations = check(entry.kernel_source)
        if violations:
            return Verdict("policy", "; ".join(str(v) for v in violations[:3]))
        return Verdict("served")

    def _versions(self, entry: Entry) -> Verdict | None:
        now = current_versions(entry.device)
        v = entry.versions or {}
        if not all(k in v for k in ("torch", "triton", "gpu")):
            return Verdict("versions_unknown", "the entry does not record torch, triton and GPU versions")
        for lib in ("torch", "triton"):
            theirs = major_minor(v[lib])
            if theirs is None or theirs != major_minor(now[lib]):
                return Verdict(f"{lib}_version", f"made with {lib} {v[lib]}, this is {now[lib]}")
        if v["gpu"] != now["gpu"]:
            return Verdict("gpu_model", f"verified on {v['gpu']}, this is {now['gpu']}")
        return None


# ---------------------------------------------------------------------------- one line per key per process

_said: set[tuple] = set()
_said_lock = threading.Lock()


def _say_once(ident: tuple, level: int, msg: str, *args: Any) -> bool:
    with _said_lock:
        if ident in _said:
            return False
        _said.add(ident)
    log.log(level, msg, *args)
    return True


def report_miss(key: str, where: str, verdict: Verdict) -> None:
    """The one log line for a key that has entries but none servable here."""
    if verdict.refused:
        _say_once(("refused", key, verdict.reason), logging.WARNING,
                  "llm_inductor: refused kernel %s from the %s tier (%s); it will not be imported",
                  key[:16], where, verdict)
    elif verdict.fixable:
        _say_once(("miss", key), logging.WARNING,
                  "llm_inductor: kernel %s in the %s tier is not served here (%s); run `llm-inductor cache verify` "
                  "to verify it on this machine and sign it with the local key", key[:16], where, verdict)
    else:
        _say_once(("miss", key), logging.INFO, "llm_inductor: kernel %s in the %s tier is not served (%s)",
                  key[:16], where, verdict)


def report_unreadable(key: str, where: str, reason: str, message: str) -> None:
    level = logging.INFO if reason == "schema" else logging.WARNING
    what = "refused" if reason == "tampered" else "skipped"
    _say_once(("unreadable", key, where, reason), level, "llm_inductor: %s an entry for key %s in the %s tier: %s",
              what, key[:16], where, message)


def forget_reports() -> None:
    """Tests: let the one-per-process lines be said again."""
    with _said_lock:
        _said.clear()
