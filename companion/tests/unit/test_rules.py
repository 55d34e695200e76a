"""Rules files: parsing (with errors that name the rule and key), every criterion, order and defaults."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from companion.tests.fakes import sample_delegation
from vouchsim.companion.core.errors import CompanionError, RulesError
from vouchsim.companion.core.rules import Rule, RuleSet, Verdict, evaluate, load_rules, parse_rules

PAYMENTS = sample_delegation()  # aud_test_payments, payments.identity + payments.prepare, Acme, vsc_1


def verdict(text: str, **fields: object) -> Verdict:
    return evaluate(parse_rules(text), sample_delegation(**fields))


def one_rule(criteria: str, decision: str = "approve") -> str:
    return f'default = "leave"\n[[rule]]\n{criteria}\ndecision = "{decision}"\n'


# --- the documented example ------------------------------------------------------------------------


EXAMPLE = """
default = "deny"

[[rule]]
name = "never pay strangers"
audience = "aud_test_payments"
client_name = "Unknown*"
decision = "deny"

[[rule]]
audience = ["aud_test_*", "aud_demo"]
scopes = ["payments.identity", "payments.prepare"]
purpose_contains = "PAYMENT"
decision = "approve"

[[rule]]
client_id = "vsc_ci_?"
purpose_regex = "^CI run [0-9]+$"
decision = "approve"
"""


def test_the_example_parses_into_ordered_rules() -> None:
    rules = parse_rules(EXAMPLE)
    assert rules.default == "deny"
    assert [r.number for r in rules.rules] == [1, 2, 3]
    first, second, third = rules.rules
    assert first == Rule(
        number=1,
        decision="deny",
        name="never pay strangers",
        audience=("aud_test_payments",),
        client_name=("Unknown*",),
    )
    assert second.audience == ("aud_test_*", "aud_demo")
    assert second.scopes == ("payments.identity", "payments.prepare")
    assert third.purpose_regex is not None and third.purpose_regex.pattern == "^CI run [0-9]+$"
    assert (first.label, second.label) == ("rule 1: never pay strangers", "rule 2")


def test_the_first_matching_rule_wins() -> None:
    stranger = sample_delegation(client_name="Unknown agent")
    result = evaluate(parse_rules(EXAMPLE), stranger)
    assert (result.action, result.reason) == ("deny", "rule 1: never pay strangers")
    result = evaluate(parse_rules(EXAMPLE), PAYMENTS)
    assert (result.action, result.reason) == ("approve", "rule 2")
    ci = sample_delegation(client_id="vsc_ci_1", audience_id="aud_other", purpose="CI run 42")
    assert evaluate(parse_rules(EXAMPLE), ci) == Verdict("approve", parse_rules(EXAMPLE).rules[2])
    nothing = sample_delegation(client_id="vsc_ci_12", audience_id="aud_other", purpose="CI run 42")
    assert evaluate(parse_rules(EXAMPLE), nothing) == Verdict("deny")


def test_order_matters_when_two_rules_match() -> None:
    approve_first = one_rule('audience = "aud_*"') + '[[rule]]\naudience = "aud_test_payments"\ndecision = "deny"\n'
    deny_first = (
        'default = "leave"\n[[rule]]\naudience = "aud_test_payments"\ndecision = "deny"\n'
        '[[rule]]\naudience = "aud_*"\ndecision = "approve"\n'
    )
    assert evaluate(parse_rules(approve_first), PAYMENTS) == Verdict("approve", parse_rules(approve_first).rules[0])
    assert evaluate(parse_rules(deny_first), PAYMENTS).action == "deny"


@pytest.mark.parametrize("default", ["ask", "deny", "leave"])
def test_the_default_applies_when_nothing_matches(default: str) -> None:
    result = verdict(f'default = "{default}"\n[[rule]]\naudience = "aud_nope"\ndecision = "approve"\n')
    assert result == Verdict(default)  # type: ignore[arg-type]
    assert result.reason == f"no rule matched, default {default}"


def test_the_default_default_is_ask_and_no_rules_is_fine() -> None:
    assert parse_rules("") == RuleSet(rules=(), default="ask")
    assert evaluate(parse_rules(""), PAYMENTS) == Verdict("ask")


# --- each criterion --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("criterion", "matches"),
    [
        ('audience = "aud_test_payments"', True),
        ('audience = "aud_test"', False),  # exact, not a prefix
        ('audience = "aud_test_*"', True),
        ('audience = "AUD_TEST_*"', False),  # case-sensitive
        ('audience = "aud_test_payment?"', True),
        ('audience = "aud_test_[pq]ayments"', True),
        ('audience = ["aud_a", "aud_test_payments"]', True),
        ('audience = ["aud_a", "aud_b"]', False),
        ('client_id = "vsc_1"', True),
        ('client_id = "vsc_2"', False),
        ('client_id = "vsc_*"', True),
        ('client_name = "Acme Agent Client"', True),
        ('client_name = "Acme*"', True),
        ('client_name = "acme*"', False),
        ('client_name = ["Other", "Acme *"]', True),
        ('purpose_contains = "payment approval"', True),
        ('purpose_contains = "PAYMENT APPROVAL"', True),  # case-insensitive
        ('purpose_contains = "refund"', False),
        ('purpose_regex = "^Identify the user"', True),
        ('purpose_regex = "^identify"', False),  # re.search as written: case-sensitive
        ('purpose_regex = "(?i)^identify"', True),
        ('purpose_regex = "approval\\\\.$"', True),
        ('purpose_regex = "approval$"', False),
    ],
)
def test_each_criterion(criterion: str, matches: bool) -> None:
    assert verdict(one_rule(criterion)).action == ("approve" if matches else "leave")


@pytest.mark.parametrize(
    ("allowed", "requested", "matches"),
    [
        ('["payments.identity", "payments.prepare"]', ["payments.identity", "payments.prepare"], True),
        ('["payments.identity", "payments.prepare", "payments.refund"]', ["payments.prepare"], True),
        ('["payments.identity"]', ["payments.identity", "payments.prepare"], False),  # one is outside
        ('"payments.identity"', ["payments.identity"], True),
        ('["payments.*"]', ["payments.identity", "payments.prepare"], True),
        ('["payments.*"]', ["payments.identity", "mail.send"], False),
        ("[]", [], True),  # a delegation asking for nothing is within any set
        ("[]", ["payments.identity"], False),
        ('["payments.identity"]', [], True),
    ],
)
def test_requested_scopes_must_all_be_within_the_listed_set(allowed: str, requested: list[str], matches: bool) -> None:
    assert verdict(one_rule(f"scopes = {allowed}"), scopes=requested).action == ("approve" if matches else "leave")


def test_every_criterion_of_a_rule_must_hold() -> None:
    rule = one_rule('audience = "aud_test_payments"\nclient_id = "vsc_1"\npurpose_contains = "payment"')
    assert verdict(rule).action == "approve"
    assert verdict(rule, client_id="vsc_2").action == "leave"
    assert verdict(rule, audience_id="aud_other").action == "leave"
    assert verdict(rule, purpose="Just looking.").action == "leave"


def test_a_deny_rule_denies() -> None:
    result = verdict(one_rule('audience = "aud_*"', "deny"))
    assert (result.action, result.reason) == ("deny", "rule 1")


# --- invalid files ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("default = ", "not valid TOML"),
        ('default = "approve"', "default must be one of 'ask', 'deny', 'leave'"),
        ("colour = 1", "unknown top-level key 'colour'"),
        ('rule = "x"', r"\[\[rule\]\] tables"),
        ("[rule]\ndecision = 'deny'", r"\[\[rule\]\] tables"),
        ('[[rule]]\naudience = "a"', "rule 1: decision must be one of 'approve', 'deny', got None"),
        ('[[rule]]\naudience = "a"\ndecision = "allow"', "rule 1: decision must be.*got 'allow'"),
        ('[[rule]]\naudiance = "a"\ndecision = "deny"', "rule 1: unknown key 'audiance'"),
        ('[[rule]]\ndecision = "approve"', "rule 1 would match every delegation"),
        ('[[rule]]\nname = "all"\ndecision = "approve"', "rule 1 would match every delegation"),
        ('[[rule]]\naudience = "a"\ndecision = "deny"\n[[rule]]\naudience = []\ndecision = "deny"', "rule 2: audience"),
        ('[[rule]]\naudience = 3\ndecision = "deny"', "rule 1: audience must be a non-empty string"),
        ('[[rule]]\naudience = ""\ndecision = "deny"', "rule 1: audience must be a non-empty string"),
        ('[[rule]]\nclient_id = ["a", 1]\ndecision = "deny"', "rule 1: client_id"),
        ('[[rule]]\nscopes = "x"\npurpose_contains = ""\ndecision = "deny"', "purpose_contains must be a non-empty"),
        ('[[rule]]\npurpose_regex = "(" \ndecision = "deny"', "purpose_regex is not a valid regular expression"),
        ('[[rule]]\nname = 1\naudience = "a"\ndecision = "deny"', "rule 1: name must be a non-empty string"),
    ],
)
def test_invalid_rules_are_refused_with_a_pointed_message(text: str, message: str) -> None:
    with pytest.raises(RulesError, match=message) as caught:
        parse_rules(text, source="my.toml")
    assert str(caught.value).startswith("my.toml")
    assert isinstance(caught.value, CompanionError) and "companion-rules.md" in caught.value.hint


# --- files -----------------------------------------------------------------------------------------


def test_load_rules_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(EXAMPLE, encoding="utf-8")
    assert load_rules(path) == parse_rules(EXAMPLE)


def test_load_rules_names_the_file_in_errors(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match=r"Cannot read the rules file .*missing\.toml"):
        load_rules(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b'default = "\xff"')
    with pytest.raises(RulesError, match=r"bad\.toml is not UTF-8"):
        load_rules(bad)
    broken = tmp_path / "broken.toml"
    broken.write_text("[[rule]]\ndecision = 'approve'\n", encoding="utf-8")
    with pytest.raises(RulesError, match=r"broken\.toml, rule 1 would match every delegation"):
        load_rules(broken)


def test_the_documented_example_is_valid_and_means_what_the_document_says() -> None:
    document = (Path(__file__).parents[3] / "docs" / "companion-rules.md").read_text(encoding="utf-8")
    example = re.search(r"```toml\n(.*?)```", document, re.DOTALL)
    assert example is not None
    rules = parse_rules(example[1])
    assert rules.default == "leave"
    assert [rule.label for rule in rules.rules] == [
        "rule 1: never for unknown agents",
        "rule 2: payments, within the test scopes",
        "rule 3",
    ]
    assert evaluate(rules, PAYMENTS).reason == "rule 2: payments, within the test scopes"
    assert evaluate(rules, sample_delegation(scopes=["payments.identity"])).action == "approve"
    assert evaluate(rules, sample_delegation(scopes=["payments.identity", "payments.refund"])).action == "leave"
    assert evaluate(rules, sample_delegation(client_name="Unknown bot")).action == "deny"
