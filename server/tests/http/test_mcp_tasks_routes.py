"""The Tasks extension for waiting delegations, over HTTP with real tokens: a declaring client's delegation_request
becomes a task at once; tasks/get follows the device's decision and then holds exactly the blocking call's result;
tasks/cancel withdraws; ids are unguessable, stored hashed, bound to their client; -32602 for unknown, foreign or
expired tasks, -32021 without the extension; tasks survive a restart."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from litestar.testing import TestClient

from server.tests.http.conftest import ISSUER, TEST_HOSTS
from server.tests.http.test_mcp_modern_routes import SERVER_INFO, Modern, completed, modern
from server.tests.http.test_mcp_routes import PAYMENT, approve_on_device, rpc_error
from server.tests.support import Flow, register
from vouchsim.server.app import create_app
from vouchsim.server.core.clock import FrozenClock
from vouchsim.server.settings import Settings

TASKS = {"extensions": {"io.modelcontextprotocol/tasks": {}}}


@pytest.fixture
def settings(database_url: str) -> Settings:
    """Access tokens outlive a finished task's hour here, so its expiry can be seen with the same token."""
    return Settings(database_url=database_url, access_token_ttl=3 * 3600, allowed_hosts=TEST_HOSTS)


def tasking(flow: Flow, scope: str = "identity delegation", info: dict[str, Any] | None = None) -> Modern:
    client = modern(flow, scope, info)
    client.capabilities = TASKS
    return client


def created_task(mcp: Modern, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
    response = mcp.call("delegation_request", arguments or PAYMENT, request_id="create")
    assert response.status_code == 200, response.text
    assert "mcp-session-id" not in response.headers
    task = response.json()["result"]
    assert task["resultType"] == "task" and task["_meta"]["io.modelcontextprotocol/serverInfo"] == SERVER_INFO
    return task  # type: ignore[no-any-return]


def task_get(mcp: Modern, task_id: str, request_id: int | str = 1) -> dict[str, Any]:
    return completed(mcp.request("tasks/get", {"taskId": task_id}, request_id))


def pending_delegation_id(flow: Flow) -> str:
    listed = flow.device.call(flow.client, "GET", "/device/delegations?status=pending").json()["delegations"]
    assert len(listed) == 1
    return listed[0]["delegation_id"]  # type: ignore[no-any-return]


def test_discover_advertises_the_extension(flow: Flow) -> None:
    capabilities = completed(modern(flow).request("server/discover"))["capabilities"]
    assert capabilities["extensions"] == {"io.modelcontextprotocol/tasks": {}}


def test_a_declaring_clients_waiting_request_becomes_a_task_at_once(flow: Flow, clock: FrozenClock) -> None:
    mcp = tasking(flow)
    task = created_task(mcp)
    assert task["taskId"].startswith("vtk_") and len(task["taskId"]) >= 40
    assert task["status"] == "working"
    assert task["createdAt"] == task["lastUpdatedAt"]
    assert 0 < task["pollIntervalMs"] <= 2000
    # Alive until the delegation's expiry (300 s) and an hour to read its result after.
    assert task["ttlMs"] == (300 + 3600) * 1000
    # The delegation is on the device already, with the binding message the task shows.
    listed = flow.device.call(flow.client, "GET", "/device/delegations").json()["delegations"]
    assert len(listed) == 1 and listed[0]["binding_message"] in task["statusMessage"]
    again = task_get(mcp, task["taskId"])
    assert again["status"] == "working" and "result" not in again
    assert again["taskId"] == task["taskId"] and again["statusMessage"] == task["statusMessage"]


def test_the_task_id_is_stored_only_as_a_hash(flow: Flow) -> None:
    from sqlalchemy import text

    task = created_task(tasking(flow))

    async def stored() -> list[str]:
        async with flow.client.app.state.resources.sessions() as session:
            return [row[0] for row in await session.execute(text("SELECT id FROM mcp_tasks"))]

    assert flow.client.blocking_portal.call(stored) == [hashlib.sha256(task["taskId"].encode()).hexdigest()]


def test_approved_on_the_device_the_task_completes_with_the_blocking_calls_result(flow: Flow) -> None:
    mcp = tasking(flow)
    task = created_task(mcp)
    delegation_id = pending_delegation_id(flow)
    approve_on_device(flow, delegation_id)
    done = task_get(mcp, task["taskId"], request_id=2)
    assert done["status"] == "completed" and "pollIntervalMs" not in done
    result = done["result"]
    # Exactly the CallToolResult a blocking delegation_request returns once approved.
    assert result["resultType"] == "complete" and result["isError"] is False
    assert result["_meta"]["io.modelcontextprotocol/serverInfo"] == SERVER_INFO
    structured = result["structuredContent"]
    assert structured["delegationId"] == delegation_id and structured["status"] == "approved"
    assert structured["token"].count(".") == 2 and structured["tokenExpiresAt"]
    assert set(result) == {"resultType", "content", "structuredContent", "isError", "_meta"}
    assert done["statusMessage"] == result["content"][-1]["text"]
    # Terminal: polled again, and even after the delegation is revoked, it stays what it was.
    assert task_get(mcp, task["taskId"], request_id=3) == done
    revoked = mcp.result("delegation_revoke", {"delegationId": delegation_id})["structuredContent"]
    assert revoked["status"] == "revoked"
    assert task_get(mcp, task["taskId"], request_id=4)["result"] == result


def test_denied_or_expired_the_task_completes_with_that_outcome(flow: Flow, clock: FrozenClock) -> None:
    from server.tests.delegation_support import sign

    mcp = tasking(flow)
    denied_task = created_task(mcp)
    delegation_id = pending_delegation_id(flow)
    listed = flow.device.call(flow.client, "GET", "/device/delegations").json()["delegations"]
    path = f"/device/delegations/{delegation_id}/decision"
    decision = sign(flow.device.key, listed[0], decision="deny").body()
    assert flow.device.call(flow.client, "POST", path, decision).status_code == 200
    denied = task_get(mcp, denied_task["taskId"])
    assert denied["status"] == "completed" and denied["result"]["isError"] is False
    assert denied["result"]["structuredContent"]["status"] == "denied"
    assert "token" not in denied["result"]["structuredContent"]

    expiring = created_task(mcp)
    assert task_get(mcp, expiring["taskId"])["status"] == "working"
    clock.advance(301)
    expired = task_get(mcp, expiring["taskId"])
    assert expired["status"] == "completed" and expired["result"]["structuredContent"]["status"] == "expired"


def test_tasks_cancel_withdraws_the_delegation(flow: Flow) -> None:
    mcp = tasking(flow)
    task = created_task(mcp)
    delegation_id = pending_delegation_id(flow)
    for request_id in (1, 2):  # idempotent
        acknowledged = completed(mcp.request("tasks/cancel", {"taskId": task["taskId"]}, request_id))
        assert set(acknowledged) == {"resultType", "_meta"}
    cancelled = task_get(mcp, task["taskId"])
    assert cancelled["status"] == "cancelled" and "result" not in cancelled
    status = mcp.result("delegation_status", {"delegationId": delegation_id})["structuredContent"]
    assert status["status"] == "cancelled"


def test_withdrawing_the_delegation_cancels_the_task(flow: Flow) -> None:
    mcp = tasking(flow)
    task = created_task(mcp)
    mcp.result("delegation_revoke", {"delegationId": pending_delegation_id(flow)})
    assert task_get(mcp, task["taskId"])["status"] == "cancelled"


def test_tasks_update_is_acknowledged(flow: Flow) -> None:
    mcp = tasking(flow)
    task = created_task(mcp)
    params = {"taskId": task["taskId"], "inputResponses": {"unknown": {"action": "accept"}}}
    assert set(completed(mcp.request("tasks/update", params))) == {"resultType", "_meta"}
    assert task_get(mcp, task["taskId"])["status"] == "working"


@pytest.mark.parametrize("method", ["tasks/get", "tasks/update", "tasks/cancel"])
def test_an_unknown_task_is_invalid_params(flow: Flow, method: str) -> None:
    mcp = tasking(flow)
    for task_id in ("vtk_" + "A" * 43, "not-a-task", "vtk_" + "x" * 500):
        body = rpc_error(mcp.request(method, {"taskId": task_id}, request_id=9), 200, -32602)
        assert body["id"] == 9 and "Task not found" in body["error"]["message"]
    body = rpc_error(mcp.request(method, {}, request_id=10, **{"Mcp-Name": "<absent>"}), 200, -32602)
    assert body["id"] == 10


@pytest.mark.parametrize("method", ["tasks/get", "tasks/update", "tasks/cancel"])
def test_another_clients_token_does_not_get_the_task(flow: Flow, method: str) -> None:
    owner = tasking(flow)
    task = created_task(owner)
    stranger = tasking(flow)  # the same user, another client
    body = rpc_error(stranger.request(method, {"taskId": task["taskId"]}, request_id=11), 200, -32602)
    assert body["id"] == 11 and "Task not found" in body["error"]["message"]
    assert task_get(owner, task["taskId"])["status"] == "working"  # untouched


def test_an_expired_task_is_invalid_params(flow: Flow, clock: FrozenClock) -> None:
    mcp = tasking(flow)
    task = created_task(mcp)
    approve_on_device(flow, pending_delegation_id(flow))
    assert task_get(mcp, task["taskId"])["status"] == "completed"
    clock.advance(3601)
    body = rpc_error(mcp.request("tasks/get", {"taskId": task["taskId"]}, request_id=12), 200, -32602)
    assert body["id"] == 12 and "expired" in body["error"]["message"]


@pytest.mark.parametrize("method", ["tasks/get", "tasks/update", "tasks/cancel"])
def test_without_the_extension_tasks_are_missing_capability(flow: Flow, method: str) -> None:
    owner = tasking(flow)
    task = created_task(owner)
    owner.capabilities = {}
    body = rpc_error(owner.request(method, {"taskId": task["taskId"]}, request_id=13), 400, -32021)
    assert body["id"] == 13
    assert body["error"]["data"] == {"requiredCapabilities": {"extensions": {"io.modelcontextprotocol/tasks": {}}}}


def test_a_client_without_the_extension_gets_the_blocking_answer(flow: Flow) -> None:
    mcp = modern(flow)
    result = completed(mcp.call("delegation_request", {**PAYMENT, "timeoutSeconds": 0.1}))
    assert result["structuredContent"]["status"] == "pending" and "taskId" not in result


def test_only_a_waiting_delegation_request_becomes_a_task(flow: Flow) -> None:
    mcp = tasking(flow)
    result = completed(mcp.call("delegation_request", {**PAYMENT, "waitForApproval": False}))
    assert result["structuredContent"]["status"] == "pending"
    refused = completed(mcp.call("delegation_request", {**PAYMENT, "audienceId": "aud_nope"}))
    assert refused["isError"] is True and "aud_nope" in refused["content"][0]["text"]
    assert completed(mcp.call("identity_get"))["isError"] is False


def test_mcp_name_must_name_the_task(flow: Flow) -> None:
    mcp = tasking(flow)
    task = created_task(mcp)
    body = rpc_error(mcp.request("tasks/get", {"taskId": task["taskId"]}, 14, **{"Mcp-Name": "vtk_other"}), 400, -32020)
    assert body["id"] == 14


def test_tasks_need_the_delegation_scope(flow: Flow) -> None:
    info = register(flow.client)
    owner = tasking(flow, info=info)
    task = created_task(owner)
    identity_only = tasking(flow, scope="identity", info=info)
    response = identity_only.request("tasks/get", {"taskId": task["taskId"]}, request_id=15)
    assert response.status_code == 403 and 'error="insufficient_scope"' in response.headers["www-authenticate"]


def test_tasks_survive_a_restart(flow: Flow, settings: Settings, clock: FrozenClock) -> None:
    mcp = tasking(flow)
    task = created_task(mcp)
    approve_on_device(flow, pending_delegation_id(flow))
    with TestClient(create_app(settings, clock=clock), base_url=ISSUER) as restarted:
        other = Modern(restarted, mcp.token, TASKS)
        done = completed(other.request("tasks/get", {"taskId": task["taskId"]}))
    assert done["status"] == "completed" and done["result"]["structuredContent"]["status"] == "approved"
