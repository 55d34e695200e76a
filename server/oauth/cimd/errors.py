"""Why a Client ID Metadata Document could not be used: one class per failure, every one `invalid_client`.

The client is not trusted until its document has been fetched and validated, so the routes never redirect on these
errors: the authorization page shows the description, the token, revocation and introspection endpoints answer
`invalid_client` (draft-ietf-oauth-client-id-metadata-document-02 §5.1; MCP 2026-07-28 "Client ID Metadata
Documents"). Descriptions are written for the developer of the client, are safe for `error_description` (RFC 6749
§5.2 characters only), and never name an address the server resolved (that would make the server an oracle for
internal DNS); the log line does.
"""

from __future__ import annotations

from vouchsim.server.core.errors import VouchsimError
from vouchsim.server.oauth.errors import safe_description


class CimdError(VouchsimError):
    """The client's metadata document could not be used."""

    code = "invalid_client"
    status = 400

    def __init__(self, description: str = "") -> None:
        super().__init__(safe_description(description) if description else "")


# -- the client_id URL (draft §3) ----------------------------------------------------------------------------


class InvalidClientIdUrl(CimdError):
    """This client_id is not a valid client identifier URL."""


# -- fetching (draft §5, §8.6, §8.7) ---------------------------------------------------------------------------


class AddressRefused(CimdError):
    """The client's metadata document is on an address this server does not fetch from."""


class PortRefused(CimdError):
    """The client's metadata document is on a port this server does not fetch from."""


class HostRateLimited(CimdError):
    """This server fetched documents from the client's host too often; try again shortly."""


class FetchFailed(CimdError):
    """The client's metadata document could not be fetched."""


class FetchTimedOut(FetchFailed):
    """The client's metadata document took too long to arrive."""


class RedirectRefused(CimdError):
    """The client's metadata document answered with a redirect, which is not followed."""


class UnexpectedStatus(CimdError):
    """The client's metadata document did not answer 200 OK."""


class WrongContentType(CimdError):
    """The client's metadata document is not served as application/json."""


class DocumentTooLarge(CimdError):
    """The client's metadata document is larger than this server reads."""


class NotJson(CimdError):
    """The client's metadata document is not a JSON object."""


# -- the document (draft §4, §4.1; MCP "For Authorization Servers") --------------------------------------------


class ClientIdMismatch(CimdError):
    """The document's client_id is not exactly the URL it was fetched from."""


class SecretPresent(CimdError):
    """The document carries a client secret, which a metadata document must never do."""


class SharedSecretAuthMethod(CimdError):
    """The document asks for a shared-secret authentication method, which a metadata document cannot use."""


class UnsupportedAuthMethod(CimdError):
    """The document asks for a token endpoint authentication method this server does not offer."""


class PrivateKeyMaterial(CimdError):
    """The document publishes private key material."""


class InvalidDocument(CimdError):
    """The document lacks a required field or has one of the wrong type."""


class InvalidRedirectUri(InvalidDocument):
    """One of the document's redirect URIs cannot be used."""
