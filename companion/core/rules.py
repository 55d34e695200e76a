"""Rules for deciding delegations without a person: a TOML file, read once, first matching rule wins.

The format is documented in docs/companion-rules.md; in short:

    default = "ask"                      # when no rule matches: "ask", "deny" or "leave"

    [[rule]]
    name = "payments, read-only"         # optional, shown in the output
    audience = "aud_test_*"              # glob(s) on audience_id
    scopes = ["payments.identity", "payments.prepare"]  # every requested scope must be one of these
    purpose_contains = "payment"         # optional, case-insensitive substring
    purpose_regex = "^Identify "         # optional, Python `re.search`
    client_id = "vsc_*"                  # optional glob(s)
    client_name = "Acme *"               # optional glob(s)
    decision = "approve"                 # "approve" or "deny"

Everything here is pure: parsing text into a `RuleSet` and evaluating a delegation against it. Reading
the file (`load_rules`) is the only I/O, and no function here talks to the server.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Final, Literal

from vouchsim.companion.core.decisions import DECISIONS, Decision, checked_decision
from vouchsim.companion.core.errors import RulesError
from vouchsim.companion.core.schemas import Delegation

Default = Literal["ask", "deny", "leave"]
DEFAULTS: Final[tuple[Default, ...]] = ("ask", "deny", "leave")
Action = Literal["approve", "deny", "ask", "leave"]

CRITERIA: Final = ("audience", "scopes", "purpose_contains", "purpose_regex", "client_id", "client_name")
RULE_KEYS: Final = frozenset({"name", "decision", *CRITERIA})
TOP_KEYS: Final = frozenset({"default", "rule"})

Patterns = tuple[str, ...]


def _any_glob(patterns: Patterns, value: str) -> bool:
    # fnmatchcase: `*`, `?` and `[…]`, case-sensitive on every platform; a plain id matches only itself.
    return any(fnmatchcase(value, pattern) for pattern in patterns)


@dataclass(frozen=True)
class Rule:
    """One `[[rule]]`: every criterion it names must hold; criteria it leaves out hold for anything."""

    number: int  # 1-based, in file order
    decision: Decision
    name: str | None = None
    audience: Patterns | None = None
    scopes: Patterns | None = None
    purpose_contains: str | None = None
    purpose_regex: re.Pattern[str] | None = None
    client_id: Patterns | None = None
    client_name: Patterns | None = None

    @property
    def label(self) -> str:
        return f"rule {self.number}" + (f": {self.name}" if self.name else "")

    def matches(self, delegation: Delegation) -> bool:
        if self.audience is not None and not _any_glob(self.audience, delegation.audience_id):
            return False
        if self.scopes is not None and not all(_any_glob(self.scopes, s) for s in delegation.scopes):
            return False
        if self.purpose_contains is not None and self.purpose_contains.casefold() not in delegation.purpose.casefold():
            return False
        if self.purpose_regex is not None and self.purpose_regex.search(delegation.purpose) is None:
            return False
        if self.client_id is not None and not _any_glob(self.client_id, delegation.client_id):
            return False
        return self.client_name is None or _any_glob(self.client_name, delegation.client_name)


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...] = ()
    default: Default = "ask"


@dataclass(frozen=True)
class Verdict:
    """What to do with a delegation, and why: the rule that matched, or None for the default."""

    action: Action
    rule: Rule | None = None

    @property
    def reason(self) -> str:
        return self.rule.label if self.rule is not None else f"no rule matched, default {self.action}"


def evaluate(ruleset: RuleSet, delegation: Delegation) -> Verdict:
    """The first rule that matches decides; otherwise the set's default."""
    for rule in ruleset.rules:
        if rule.matches(delegation):
            return Verdict(rule.decision, rule)
    return Verdict(ruleset.default)


# --- parsing -------------------------------------------------------------------------------------------


def load_rules(path: Path) -> RuleSet:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesError(f"Cannot read the rules file {path}: {exc.strerror or exc}.") from exc
    except UnicodeDecodeError as exc:
        raise RulesError(f"The rules file {path} is not UTF-8 text.") from exc
    return parse_rules(text, source=str(path))


def parse_rules(text: str, *, source: str = "rules") -> RuleSet:
    """A RuleSet from TOML text; RulesError naming the file, rule and key for anything wrong."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"{source} is not valid TOML: {exc}.") from exc
    _no_unknown_keys(data, TOP_KEYS, f"{source}: unknown top-level key")
    default = data.get("default", "ask")
    if default not in DEFAULTS:
        raise RulesError(f"{source}: default must be one of {_choices(DEFAULTS)}, not {default!r}.")
    tables = data.get("rule", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise RulesError(f"{source}: rules are written as [[rule]] tables.")
    rules = tuple(_rule(table, number, source) for number, table in enumerate(tables, start=1))
    return RuleSet(rules=rules, default=default)


def _rule(table: Mapping[str, object], number: int, source: str) -> Rule:
    where = f"{source}, rule {number}"
    _no_unknown_keys(table, RULE_KEYS, f"{where}: unknown key")
    decision = table.get("decision")
    if not isinstance(decision, str) or decision not in DECISIONS:
        raise RulesError(f"{where}: decision must be one of {_choices(DECISIONS)}, got {decision!r}.")
    if not any(key in table for key in CRITERIA):
        raise RulesError(
            f"{where} would match every delegation: give it at least one of {', '.join(CRITERIA)} "
            "(or use --approve-all / --deny-all, or the default)."
        )
    regex = _text(table, "purpose_regex", where)
    try:
        compiled = re.compile(regex) if regex is not None else None
    except re.error as exc:
        raise RulesError(f"{where}: purpose_regex is not a valid regular expression ({exc}).") from exc
    return Rule(
        number=number,
        decision=checked_decision(decision),
        name=_text(table, "name", where),
        audience=_patterns(table, "audience", where),
        scopes=_patterns(table, "scopes", where, allow_empty=True),
        purpose_contains=_text(table, "purpose_contains", where),
        purpose_regex=compiled,
        client_id=_patterns(table, "client_id", where),
        client_name=_patterns(table, "client_name", where),
    )


def _text(table: Mapping[str, object], key: str, where: str) -> str | None:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise RulesError(f"{where}: {key} must be a non-empty string.")
    return value


def _patterns(table: Mapping[str, object], key: str, where: str, *, allow_empty: bool = False) -> Patterns | None:
    """A string or a list of strings. Only `scopes` may be an empty list (the delegation asks for none)."""
    value = table.get(key)
    if value is None:
        return None
    items = [value] if isinstance(value, str) else value
    if (
        not isinstance(items, list)
        or not all(isinstance(item, str) and item for item in items)
        or not (items or allow_empty)
    ):
        raise RulesError(f"{where}: {key} must be a non-empty string or a list of them.")
    return tuple(items)


def _no_unknown_keys(table: Mapping[str, object], known: frozenset[str], message: str) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        raise RulesError(f"{message} {unknown[0]!r} (known: {', '.join(sorted(known))}).")


def _choices(values: Sequence[str]) -> str:
    return ", ".join(repr(v) for v in values)
