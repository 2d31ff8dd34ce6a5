"""``mailgate explain``: the decision for one message, step by step, with nothing written."""

from __future__ import annotations

import functools
import json
import zlib
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import Session

from engine.config.model import AccountConfig
from engine.errors import MailError
from engine.mail.authentication import SenderAuthentication, authenticate_sender
from engine.mail.message import parse_message
from engine.rules.decision import Decision, decide
from engine.rules.pack import RulePack, RuleTried
from engine.rules.subject import ParsedSubject
from engine.rules.trace_form import deflated_segment, spliced_zlib
from engine.rules.vocabulary import Intent
from engine.runtime import Runtime


@dataclass
class Explanation:
    """What ``explain`` found: the parsed subject, the facts, each rule tried, the chosen steps."""

    account: str
    pack: str
    subject: str = ""
    parsed: ParsedSubject | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    tried: list[tuple[str, bool, str]] = field(default_factory=list)
    rule: str | None = None
    outcome: str | None = None
    steps: list[tuple[str, bool, str]] = field(default_factory=list)
    error: str | None = None
    authentication: SenderAuthentication | None = None
    notes: list[str] = field(default_factory=list)  # what changed the facts: ambiguous sender, reply token

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        parsed = None
        if self.parsed is not None:
            parsed = {
                "intent": self.parsed.intent.value,
                "number": self.parsed.number,
                "matched": self.parsed.matched,
            }
        return {
            "account": self.account,
            "pack": self.pack,
            "subject": self.subject,
            "parsed": parsed,
            "facts": self.facts,
            "notes": self.notes,
            "rules_tried": [{"rule": n, "matched": m, "why": w} for n, m, w in self.tried],
            "rule": self.rule,
            "outcome": self.outcome,
            "actions": [{"action": a, "runs": r, "params": p} for a, r, p in self.steps],
            "error": self.error,
            "authentication": self.authentication.to_json() if self.authentication else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Explanation:
        """The explanation ``to_json`` wrote (its facts as JSON gave them back)."""
        parsed = data.get("parsed")
        found = data.get("authentication")
        return cls(
            account=data["account"],
            pack=data["pack"],
            subject=data.get("subject", ""),
            parsed=(
                ParsedSubject(Intent(parsed["intent"]), parsed["number"], False, parsed["matched"], (), ())
                if parsed
                else None
            ),
            facts=dict(data.get("facts", {})),
            tried=[(t["rule"], t["matched"], t["why"]) for t in data.get("rules_tried", [])],
            rule=data.get("rule"),
            outcome=data.get("outcome"),
            steps=[(a["action"], a["runs"], a["params"]) for a in data.get("actions", [])],
            error=data.get("error"),
            authentication=SenderAuthentication(**found) if found else None,
            notes=list(data.get("notes", [])),
        )

    def to_text(self) -> str:
        """A readable report."""
        lines = [f"account {self.account}, rule pack {self.pack}"]
        if self.error:
            return "\n".join([*lines, f"would be quarantined: {self.error}"])
        assert self.parsed is not None
        lines.append(f"subject: {self.subject!r}")
        lines.append(
            f"  parsed: intent={self.parsed.intent.value} number={self.parsed.number}"
            f" matched={self.parsed.matched!r}"
        )
        if self.authentication is not None:
            found = self.authentication
            lines.append(f"sender authentication: {found.method} ({found.evidence})")
        lines += [f"note: {note}" for note in self.notes]
        lines.append("facts:")
        lines += [f"  {k} = {v!r}" for k, v in self.facts.items()]
        lines.append("rules tried:")
        for name, matched, why in self.tried:
            lines.append(f"  {'MATCH' if matched else 'no   '} {name}" + (f"  ({why})" if why else ""))
        if self.rule is None:
            lines.append("no rule matched: the message would be quarantined")
        else:
            lines.append(f"outcome: {self.outcome} (rule {self.rule})")
            lines.append("actions:")
            for action, runs, params in self.steps:
                lines.append(f"  {'run ' if runs else 'skip'} {action} {params}".rstrip())
        return "\n".join(lines)


def explain_message(
    runtime: Runtime, account: AccountConfig, raw: bytes, pack: RulePack | None = None
) -> Explanation:
    """Decide a message with the pipeline's own ``decide``, roll everything back, report the reasoning.

    ``pack``: decide with this pack instead of the account's (the console's try-it page).
    """
    pack = pack or runtime.pack_for(account)
    result = Explanation(account.name, pack.name)
    try:
        message = parse_message(raw, our_addresses=runtime.our_addresses)
    except MailError as exc:
        result.error = exc.reason
        return result
    authentication = authenticate_sender(message, account.authentication, raw=raw)
    with Session(runtime.engine) as session:
        try:
            decision = decide(
                session, runtime.config, account, pack, message, trace=True, authentication=authentication
            )
        finally:
            session.rollback()
    return explanation_of(decision, account.name, pack.name, message.subject)


def explanation_of(
    decision: Decision, account: str, pack: str, subject: str, *, tried: bool = True
) -> Explanation:
    """The report of a traced decision (the pipeline stores it with the ledger entry).

    ``tried``: list the rules tried (``decision_trace`` encodes them on its own).
    """
    result = Explanation(account, pack, subject)
    result.parsed, result.facts = decision.subject, dict(decision.facts)
    result.authentication = decision.situation.authentication
    result.notes = list(decision.situation.notes)
    if tried:
        result.tried = [(tried.rule, tried.matched, tried.why) for tried in decision.tried]
    if decision.rule is not None:
        result.rule, result.outcome = decision.rule.name, decision.rule.outcome
        for step, runs in decision.steps:
            params = dict(vars(step.action))
            result.steps.append((step.action.name, runs, str(params) if params else ""))
    return result


def decision_trace(decision: Decision, account: str, pack: str, subject: str) -> bytes:
    """The decision as ``explain --json`` reports it, compressed, for the ledger entry.

    Only the JSON is kept; ``read_trace`` draws the text from it when someone looks. The text is
    ``json.dumps(explanation_of(...).to_json(), default=str)``, written in parts: what is the
    message's own, and what its pack's shared choice holds (the rules tried, the chosen rule and
    its steps), which is encoded once per choice.
    """
    parsed = decision.subject
    before = _TRACE_JSON.encode(
        {
            "account": account,
            "pack": pack,
            "subject": subject,
            "parsed": {"intent": parsed.intent.value, "number": parsed.number, "matched": parsed.matched},
            "facts": dict(decision.facts),
            "notes": list(decision.situation.notes),
        }
    )
    authentication = decision.situation.authentication
    after = (
        f"{_chosen_json(decision)}, "
        f'"authentication": {_TRACE_JSON.encode(authentication.to_json() if authentication else None)}}}'
    )
    tried, segment = _rules_tried_segment(decision.tried)
    return spliced_zlib(f'{before[:-1]}, "rules_tried": '.encode(), tried, segment, after.encode())


# the JSON of a choice's rule, outcome and steps (what follows the rules tried), by the steps' identity
_CHOSEN: dict[int, tuple[Any, str]] = {}


def _chosen_json(decision: Decision) -> str:
    """``, "rule": ..., "outcome": ..., "actions": [...], "error": null`` of a decision, once per choice."""
    steps = decision.steps
    found = _CHOSEN.get(id(steps))
    if found is not None and found[0] is steps and decision.rule is not None:
        return found[1]
    chosen = explanation_of(decision, "", "", "", tried=False)
    data = chosen.to_json()
    text = (
        ", " + _TRACE_JSON.encode({key: data[key] for key in ("rule", "outcome", "actions", "error")})[1:-1]
    )
    if decision.rule is not None:  # a choice's steps are shared; the empty tuple of no rule is not
        if len(_CHOSEN) >= _TRIED_LISTS_KEPT:
            _CHOSEN.clear()
        _CHOSEN[id(steps)] = (steps, text)
    return text


def trace_json(data: dict[str, Any]) -> str:
    """``json.dumps(data, default=str)`` of ``Explanation.to_json``: the same text, for a third less.

    Most of a trace is its rules tried, and a pack has few distinct ones (a rule, whether it held,
    the part that failed): each is encoded once per process, and the rest of the trace around them.
    """
    keys = list(data)
    if "rules_tried" not in keys or keys[0] == "rules_tried" or keys[-1] == "rules_tried":
        return json.dumps(data, default=str)
    tried = ", ".join(_tried_json(e["rule"], e["matched"], e["why"]) for e in data["rules_tried"])
    return _around_rules_tried(data, f"[{tried}]")


_TRACE_JSON = json.JSONEncoder(default=str)  # json.dumps(..., default=str) builds one per call


def _around_rules_tried(data: dict[str, Any], tried: str) -> str:
    """``json.dumps(data, default=str)``, with ``tried`` as the JSON of its (inner) ``rules_tried``."""
    keys = list(data)
    at = keys.index("rules_tried")
    head = _TRACE_JSON.encode({key: data[key] for key in keys[:at]})
    tail = _TRACE_JSON.encode({key: data[key] for key in keys[at + 1 :]})
    return f'{head[:-1]}, "rules_tried": {tried}, {tail[1:]}'


# the rules tried of each of the packs' shared choices (``RulePack.choose``), by identity, as JSON
# encoded and deflated as a segment for a stored trace (engine.rules.trace_form): as many as a pack
# has distinct traces (a few dozen for the default pack), at most this many kept
_TRIED_LISTS: dict[int, tuple[tuple[RuleTried, ...], bytes, bytes]] = {}
_TRIED_LISTS_KEPT = 256


def _rules_tried_segment(tried: tuple[RuleTried, ...]) -> tuple[bytes, bytes]:
    """The JSON list of the rules tried (as ``Explanation.to_json`` gives them), encoded, and
    deflated as a segment to splice into a stored trace; made once per choice."""
    found = _TRIED_LISTS.get(id(tried))
    if found is not None and found[0] is tried:
        return found[1], found[2]
    encoded = ("[" + ", ".join(_tried_json(t.rule, t.matched, t.why) for t in tried) + "]").encode()
    if len(_TRIED_LISTS) >= _TRIED_LISTS_KEPT:
        _TRIED_LISTS.clear()
    segment = deflated_segment(encoded)
    _TRIED_LISTS[id(tried)] = (tried, encoded, segment)
    return encoded, segment


@functools.lru_cache(maxsize=4096)
def _tried_json(rule: str, matched: bool, why: str) -> str:
    return json.dumps({"rule": rule, "matched": matched, "why": why})


def read_trace(stored: bytes | None) -> dict[str, Any] | None:
    """A ledger entry's stored trace as ``{"text": ..., "json": ...}``, or None if it has none."""
    if not stored:
        return None
    data: dict[str, Any] = json.loads(zlib.decompress(stored))
    if "text" in data and "json" in data:  # written with its text, by the console's first version
        return data
    return {"text": Explanation.from_json(data).to_text(), "json": data}
