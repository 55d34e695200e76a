from __future__ import annotations

import pytest

from vouchsim.server.oauth import redirects


@pytest.mark.parametrize(
    "uri",
    [
        "https://agent.example.com/cb",
        "http://127.0.0.1:3000/cb",
        "http://localhost/cb",
        "http://[::1]:8080/x?y=1",
    ],
)
def test_registrable(uri: str) -> None:
    assert redirects.registration_problem(uri) is None


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("http://agent.example.com/cb", "https"),
        ("https://agent.example.com/cb#x", "fragment"),
        ("cb", "absolute"),
        ("https://user:pw@agent.example.com/cb", "user information"),
        ("ftp://agent.example.com/cb", "https"),
        ("http://127.0.0.1:99999/cb", "absolute"),
        ("http://127.0.0.1.evil.test/cb", "https"),
    ],
)
def test_not_registrable(uri: str, reason: str) -> None:
    problem = redirects.registration_problem(uri)
    assert problem is not None and reason in problem


def test_exact_match_and_loopback_port_freedom() -> None:
    registered = ["https://a.example/cb", "http://127.0.0.1:3000/callback", "http://localhost/cb"]
    assert redirects.matches(registered, "https://a.example/cb")
    assert not redirects.matches(registered, "https://a.example/cb/")
    assert not redirects.matches(registered, "https://a.example:444/cb")
    assert redirects.matches(registered, "http://127.0.0.1:51234/callback")
    assert redirects.matches(registered, "http://127.0.0.1/callback")
    assert redirects.matches(registered, "http://localhost:8123/cb")
    assert not redirects.matches(registered, "http://127.0.0.1:51234/other")
    assert not redirects.matches(registered, "http://localhost:8123/callback")  # host must match too
    assert not redirects.matches(registered, "http://127.0.0.1:51234/callback?x=1")
