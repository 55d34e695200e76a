"""Delegation failures, with the codes and statuses of docs/delegations.md (device API) and the MCP tools."""

from __future__ import annotations

from vouchsim.server.core.errors import VouchsimError


class DelegationNotFound(VouchsimError):
    """This delegation does not exist, or it is not yours."""

    code = "delegation_not_found"
    status = 404


class DelegationClosed(VouchsimError):
    """This delegation is no longer pending."""

    code = "delegation_closed"
    status = 409

    def __init__(self, delegation_status: str, description: str = "") -> None:
        super().__init__(description or f"This delegation is no longer pending: it is {delegation_status}.")
        self.delegation_status = delegation_status


class InvalidDecision(VouchsimError):
    """The decision is not a valid signed decision on this delegation."""

    code = "invalid_decision"
    status = 400


class UnknownAudience(VouchsimError):
    """No audience has this id."""

    code = "unknown_audience"
    status = 400


class ScopeNotAllowed(VouchsimError):
    """The audience does not offer this scope."""

    code = "scope_not_allowed"
    status = 400


class InvalidDelegationRequest(VouchsimError):
    """The request is not one this server accepts."""

    code = "invalid_request"
    status = 400
