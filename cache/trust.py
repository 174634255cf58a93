"""Which entries may be served here: signatures, versions, GPU model, policy, revocations.

``Trust.judge(entry)`` returns a ``TrustVerdict`` and never raises. Three outcomes:
  served     trusted signature, same torch and triton major.minor, this GPU model
             ("cpu" for CPU entries), static policy passed, status served, not revoked;
  a miss     anything else that ``llm-inductor cache verify`` can fix by verifying on
             this machine and re-signing (unsigned, unknown key, other versions or GPU);
  refused    tampered (bad signature) or failing the static policy: never imported.
Revoked entries and entries of another status are misses that verify cannot fix.

Revocations name a target: ``key:<digest>``, ``hash:<content_hash>`` or
``signer:<fingerprint>`` (every entry that key signed, and the revocations it
signed). Anyone who can write a pack line or a Redis field can write a revocation,
so one is honoured only when signed by a trusted key; the local tier's unsigned
rows are the exception (written by this user before revocations were signed).
Revoking a key is conservative: a signer revocation from a trusted key stands even
if its issuer is revoked too (two keys that revoke each other are both revoked);
the revoked key's key and hash revocations are no longer honoured. The keys in
``sign.COMPROMISED`` are revoked everywhere, always.

``Trust.judge_size(record)`` judges a family entry's per-size record (``cache/sizes.py``)
by the same rules, on its own signature: a trusted signer, intact, the same torch and
triton major.minor, this GPU model. A record is revoked with its entry (the entry's
``key:`` or ``hash:`` target), with its signer (``signer:``), or on its own
(``hash:<the record's content hash>``). Whether it won is not trust: the caller reads
``record.servable_here``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from llm_inductor._errors import LLMInductorError
from llm_inductor.cache import sign
from llm_inductor.cache.entry import Entry
from llm_inductor.cache.key import KEY_SCHEMA
from llm_inductor.cache.sizes import SizeRecord

log = logging.getLogger(__name__)

FIXABLE = frozenset(
    {"unsigned", "untrusted_key", "torch_version", "triton_version", "gpu_model", "versions_unknown", "key_schema"}
)
REFUSED = frozenset({"tampered", "policy"})


@dataclass(frozen=True)
class TrustVerdict:
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


@dataclass(frozen=True)
class Revocation:
    """Never serve ``target`` again, said by ``signer`` (a key fingerprint; empty: unsigned)."""

    target: str
    reason: str = ""
    signer: str = ""
    signature: str = ""  # hex, over target and reason (sign.SigningKey.sign_revocation)

    @property
    def kind(self) -> str:
        return self.target.split(":", 1)[0]

    def signed_with(self, key: sign.SigningKey) -> Revocation:
        return dataclasses.replace(
            self, signer=key.public.fingerprint, signature=key.sign_revocation(self.target, self.reason)
        )

    def body(self) -> str:
        """What the SQLite and Redis tiers store against the target."""
        return json.dumps({"reason": self.reason, "signer": self.signer, "signature": self.signature}, sort_keys=True)

    @classmethod
    def from_body(cls, target: str, body: str) -> Revocation:
        """A stored value; a bare reason (written before revocations were signed) reads as unsigned."""
        try:
            d = json.loads(body)
        except (TypeError, ValueError):
            d = None
        if isinstance(d, dict) and "signature" in d:
            return cls(target, str(d.get("reason") or ""), str(d.get("signer") or ""), str(d.get("signature") or ""))
        return cls(target, str(body or ""))

    def describe(self) -> str:
        by = f"signed by {self.signer[:16]}" if self.signature else "unsigned"
        return f"{self.target}  ({by})  {self.reason}"


@dataclass(frozen=True)
class _Held:
    rev: Revocation
    where: str  # the tier's name, for messages
    local: bool  # the local tier: an unsigned row there is this user's own


class Revocations:
    """Every revocation the tiers hold, and which of them are honoured under a set of trusted keys."""

    def __init__(self) -> None:
        self._held: list[_Held] = []
        self._memo: tuple[tuple[int, tuple[str, ...]], dict[str, Revocation]] | None = None

    def update(self, items: Iterable[tuple[str, str]], where: str, local: bool = False) -> None:
        """(target, stored body) pairs from one tier."""
        for target, body in items:
            if valid_target(target):
                self.add(Revocation.from_body(target, body), where, local)

    def add(self, rev: Revocation, where: str, local: bool = False) -> None:
        self._held.append(_Held(rev, where, local))

    def honoured(self, keys: dict[str, sign.PublicKey]) -> dict[str, Revocation]:
        """target → the revocation that makes it so; the ignored ones are logged once each."""
        ident = (len(self._held), tuple(sorted(keys)))
        if self._memo is None or self._memo[0] != ident:
            self._memo = (ident, self._resolve(keys))
        return self._memo[1]

    def _resolve(self, keys: dict[str, sign.PublicKey]) -> dict[str, Revocation]:
        out = {
            f"signer:{fp}": Revocation(f"signer:{fp}", f"compromised: {why}") for fp, why in sign.COMPROMISED.items()
        }
        valid = []
        for held in self._held:
            problem = signature_problem(held.rev, keys, held.local)
            if problem is None:
                valid.append(held)
            else:
                _say_once(
                    ("revocation", held.rev.target, held.where, problem),
                    logging.WARNING,
                    "llm_inductor: ignoring a revocation of %s in the %s tier: %s",
                    held.rev.target,
                    held.where,
                    problem,
                )
        for held in valid:
            if held.rev.kind == "signer":
                out.setdefault(held.rev.target, held.rev)
        for held in valid:
            issuer = f"signer:{held.rev.signer}"
            if held.rev.kind == "signer" or not held.rev.signer or issuer not in out:
                out.setdefault(held.rev.target, held.rev)
            else:
                _say_once(
                    ("revocation", held.rev.target, held.where, "issuer"),
                    logging.WARNING,
                    "llm_inductor: ignoring a revocation of %s in the %s tier: its signer %s is revoked",
                    held.rev.target,
                    held.where,
                    held.rev.signer[:16],
                )
        return out

    def match(self, entry: Entry, keys: dict[str, sign.PublicKey]) -> Revocation | None:
        honoured = self.honoured(keys)
        for target in (f"key:{entry.key}", f"hash:{entry.content_hash}", f"signer:{entry.signer}"):
            if target in honoured:
                return honoured[target]
        return None

    def match_size(self, record: SizeRecord, keys: dict[str, sign.PublicKey]) -> Revocation | None:
        """The revocation that withdraws this size record: its entry's key or content hash, its signer, or itself.

        A record names its entry by id (``key:content16``): a ``hash:`` revocation withdraws
        the records of the entry whose content hash starts with those 16 digits.
        """
        honoured = self.honoured(keys)
        key, _, short = record.entry_id.partition(":")
        for target in (f"key:{key}", f"signer:{record.signer}", f"hash:{record.content_hash}"):
            if target in honoured:
                return honoured[target]
        if short:
            for target, rev in honoured.items():
                if target.startswith("hash:") and target[5:].startswith(short):
                    return rev
        return None


def signature_problem(rev: Revocation, keys: dict[str, sign.PublicKey], local: bool = False) -> str | None:
    """Why a revocation cannot be honoured on its signature alone, or None."""
    if not rev.signature:
        if local:
            return None
        return (
            "it is unsigned; only revocations signed by a trusted key are honoured (`llm-inductor cache revoke` signs)"
        )
    if rev.signer in sign.COMPROMISED:
        return f"its signer {rev.signer[:16]} is compromised"
    key = keys.get(rev.signer)
    if key is None:
        return f"signed by {rev.signer[:16]}, not a trusted key (LLM_INDUCTOR_TRUSTED_KEYS lists those)"
    if not sign.available():
        return "signatures cannot be checked here: pip install 'llm-inductor[signing]'"
    try:
        good = key.verify_revocation(bytes.fromhex(rev.signature), rev.target, rev.reason)
    except ValueError:
        good = False
    return None if good else f"the signature of {key.source} does not match it"


def valid_target(target: str) -> bool:
    return bool(re.fullmatch(r"(key|hash):[0-9a-f]{64}|signer:[0-9a-f]{32}", str(target)))


# ---------------------------------------------------------------------------- keys


def bundled_keys_dir() -> Path:
    from llm_inductor._paths import keys_dir

    return keys_dir()


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
        _say_once(
            ("policy-missing",),
            logging.WARNING,
            "llm_inductor: the static policy (llm_inductor.verify.policy) cannot be imported (%s); "
            "no cached kernel is served until it can",
            e,
        )
        return None
    return check_source


# ---------------------------------------------------------------------------- judging


@dataclass
class Trust:
    keys: dict[str, sign.PublicKey]
    revoked: Revocations = field(default_factory=Revocations)
    policy: Callable[[str], list[Any]] | None | str = "auto"  # "auto": llm_inductor.verify.policy
    _memo: dict[str, TrustVerdict] = field(default_factory=dict)
    # False: judge an item as if made on this machine's versions and GPU (its signature, content, revocations
    # and the policy still count). A release signs kernels made on another machine: each user's judge decides.
    versions: bool = True

    def judge(self, entry: Entry) -> TrustVerdict:
        try:
            rev = self.revoked.match(entry, self.keys)  # outside the memo: revocations arrive while a process runs
            if rev is not None:
                what = f"signer {rev.target.split(':', 1)[1][:16]}" if rev.kind == "signer" else rev.kind
                return TrustVerdict("revoked", f"{what} revoked ({rev.reason or 'no reason given'})")
            ident = f"{entry.content_hash}:{entry.signer}:{entry.signature}"
            hit = self._memo.get(ident)
            if hit is None:
                hit = self._judge(entry)
                if hit.reason != "policy_unavailable":
                    self._memo[ident] = hit
            return hit
        except Exception as e:  # a judge that raises would break the compile path
            return TrustVerdict("malformed", f"{type(e).__name__}: {e}")

    def _judge(self, entry: Entry) -> TrustVerdict:
        if entry.status != "served":
            return TrustVerdict("status", entry.status)
        verdict = self._signature(entry, "content")
        if verdict is not None:
            return verdict
        schema = entry.key_fields.get("schema", KEY_SCHEMA)
        if schema != KEY_SCHEMA:  # schema 1 did not say which values a region returns: one key, several regions
            return TrustVerdict(
                "key_schema",
                f"made under key schema {schema}; `llm-inductor cache verify` migrates it "
                f"to schema {KEY_SCHEMA} by verifying it against this machine's regions",
            )
        verdict = self._versions(entry) if self.versions else None
        if verdict is not None:
            return verdict
        check = _policy() if self.policy == "auto" else self.policy
        if check is None:
            return TrustVerdict("policy_unavailable", "llm_inductor.verify.policy is missing")
        violations = check(entry.kernel_source)
        if violations:
            return TrustVerdict("policy", "; ".join(str(v) for v in violations[:3]))
        return TrustVerdict("served")

    def judge_size(self, record: SizeRecord) -> TrustVerdict:
        """Whether a per-size record may be believed here (served) or why not; never raises.

        Its own signature (by a trusted key, over its content hash), the torch and triton
        major.minor it was timed under, this GPU model, and revocations. ``record.servable_here``
        is the caller's to read: a trusted record of a kernel that lost is still served.
        """
        try:
            rev = self.revoked.match_size(record, self.keys)
            if rev is not None:
                kind = rev.kind if rev.target != f"hash:{record.content_hash}" else "size record"
                what = f"signer {rev.target.split(':', 1)[1][:16]}" if rev.kind == "signer" else kind
                return TrustVerdict("revoked", f"{what} revoked ({rev.reason or 'no reason given'})")
            ident = f"size:{record.content_hash}:{record.signer}:{record.signature}"
            hit = self._memo.get(ident)
            if hit is None:
                hit = self._memo[ident] = self._judge_size(record)
            return hit
        except Exception as e:  # a judge that raises would break the compile path
            return TrustVerdict("malformed", f"{type(e).__name__}: {e}")

    def _judge_size(self, record: SizeRecord) -> TrustVerdict:
        verdict = self._signature(record, "size record")
        if verdict is not None or not self.versions:
            return verdict or TrustVerdict("served")
        now = current_versions("cpu" if record.gpu == "cpu" else "cuda")
        v = record.versions or {}
        if not all(k in v for k in ("torch", "triton")):
            return TrustVerdict("versions_unknown", "the size record does not record torch and triton versions")
        for lib in ("torch", "triton"):
            theirs = major_minor(v[lib])
            if theirs is None or theirs != major_minor(now[lib]):
                return TrustVerdict(f"{lib}_version", f"timed with {lib} {v[lib]}, this is {now[lib]}")
        if v.get("gpu", record.gpu) != record.gpu:
            return TrustVerdict("gpu_model", f"keyed by {record.gpu} but measured on {v['gpu']}")
        if record.gpu != now["gpu"]:
            return TrustVerdict("gpu_model", f"timed on {record.gpu}, this is {now['gpu']}")
        return TrustVerdict("served")

    def _signature(self, item: Entry | SizeRecord, what: str) -> TrustVerdict | None:
        """Why item's signature is not one to believe here, or None (signed by a trusted key, intact)."""
        if not item.signature or not item.signer:
            return TrustVerdict("unsigned", "no signature")
        if not (re.fullmatch(r"[0-9a-f]{128}", item.signature) and re.fullmatch(r"[0-9a-f]{32}", item.signer)):
            return TrustVerdict(
                "tampered", "the signature is malformed (Ed25519: 128 hex digits, by a 32-digit fingerprint)"
            )
        if not sign.available():
            return TrustVerdict("no_crypto", "signatures cannot be checked: pip install 'llm-inductor[signing]'")
        key = self.keys.get(item.signer)
        if key is None:
            return TrustVerdict("untrusted_key", f"signed by {item.signer[:16]}, not a trusted key")
        try:
            good = key.verify(bytes.fromhex(item.signature), item.content_hash)
        except ValueError:
            good = False
        if not good:
            return TrustVerdict("tampered", f"the signature of {key.source} does not match the {what}")
        return None

    def _versions(self, entry: Entry) -> TrustVerdict | None:
        now = current_versions(entry.device)
        v = entry.versions or {}
        if not all(k in v for k in ("torch", "triton", "gpu")):
            return TrustVerdict("versions_unknown", "the entry does not record torch, triton and GPU versions")
        for lib in ("torch", "triton"):
            theirs = major_minor(v[lib])
            if theirs is None or theirs != major_minor(now[lib]):
                return TrustVerdict(f"{lib}_version", f"made with {lib} {v[lib]}, this is {now[lib]}")
        if v["gpu"] != now["gpu"]:
            return TrustVerdict("gpu_model", f"verified on {v['gpu']}, this is {now['gpu']}")
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


def report_miss(key: str, where: str, verdict: TrustVerdict) -> None:
    """The one log line for a key that has entries but none servable here."""
    if verdict.refused:
        _say_once(
            ("refused", key, verdict.reason),
            logging.WARNING,
            "llm_inductor: refused kernel %s from the %s tier (%s); it will not be imported",
            key[:16],
            where,
            verdict,
        )
    elif verdict.fixable:
        _say_once(
            ("miss", key, verdict.reason),
            logging.WARNING,
            "llm_inductor: kernel %s in the %s tier is not served here (%s); run `llm-inductor cache verify` "
            "to verify it on this machine and sign it with the local key",
            key[:16],
            where,
            verdict,
        )
    elif verdict.reason == "revoked":  # verifying cannot lift a revocation: say so, and where to look
        _say_once(
            ("miss", key, verdict.reason),
            logging.INFO,
            "llm_inductor: kernel %s in the %s tier is %s; Inductor compiles the region "
            "(`llm-inductor cache revoke --list` lists revocations)",
            key[:16],
            where,
            verdict,
        )
    else:
        _say_once(
            ("miss", key, verdict.reason),
            logging.INFO,
            "llm_inductor: kernel %s in the %s tier is not served (%s)",
            key[:16],
            where,
            verdict,
        )


def report_size(record_key: str, where: str, verdict: TrustVerdict) -> None:
    """The one log line for a per-size record that is not believed here (it counts as never timed)."""
    level = logging.WARNING if verdict.refused or verdict.reason == "malformed" else logging.INFO
    _say_once(
        ("size", record_key, where, verdict.reason),
        level,
        "llm_inductor: %s the size record %s in the %s tier (%s); that size counts as not timed here",
        "refused" if verdict.refused else "skipped",
        record_key,
        where,
        verdict,
    )


def report_unreadable(key: str, where: str, reason: str, message: str) -> None:
    level = logging.INFO if reason == "schema" else logging.WARNING
    what = "refused" if reason == "tampered" else "skipped"
    _say_once(
        ("unreadable", key, where, reason),
        level,
        "llm_inductor: %s an entry for key %s in the %s tier: %s",
        what,
        key[:16],
        where,
        message,
    )


def forget_reports() -> None:
    """Tests: let the one-per-process lines be said again."""
    with _said_lock:
        _said.clear()
