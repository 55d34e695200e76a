"""Failures of the trusted-device API, with the codes and statuses of docs/device-api.md."""

from __future__ import annotations

from vouchsim.server.core.errors import VouchsimError


class InvalidRequest(VouchsimError):
    """The request body is not what this endpoint accepts."""

    code = "invalid_request"
    status = 400


class InvalidSignature(VouchsimError):
    """The request is not signed by an enrolled device."""

    code = "invalid_signature"
    status = 401


class DeviceRevoked(VouchsimError):
    """The request is signed by a device that was revoked (it forgot itself, or the operator revoked it). Said
    only once the signature checks out with that device's own key: to anyone else it is `invalid_signature`."""

    code = "device_revoked"
    status = 401


class DeviceNotFound(VouchsimError):
    """No device has this id."""

    code = "device_not_found"
    status = 404


class DeviceExists(VouchsimError):
    """This key is already enrolled as a device."""

    code = "device_exists"
    status = 409


class ConnectionNotFound(VouchsimError):
    """This connection does not exist, or it is not yours."""

    code = "connection_not_found"
    status = 404
