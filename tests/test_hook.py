"""WhatsAppBusinessHook against the Graph sandbox, over HTTP on 127.0.0.1."""

from __future__ import annotations

import hashlib
import hmac
import logging
from typing import Any

import pytest

from airflow_provider_whatsapp.exceptions import (
    GraphAPIError,
    GraphConnectionError,
    GraphPermanentError,
    GraphResponseError,
    GraphThrottledError,
    GraphTransientError,
    InvalidInputError,
)
from airflow_provider_whatsapp.hooks.graph import USER_AGENT, GraphRetryPolicy
from airflow_provider_whatsapp.hooks.whatsapp import WhatsAppBusinessHook
from airflow_provider_whatsapp.sandbox import Fault
from tests.policies import FAST_POLICY

# Exercises the provider through Airflow: run on every supported version (scripts/compat).
pytestmark = pytest.mark.compat

CREATE_PATH = r"/phone_numbers$"


def create(hook: WhatsAppBusinessHook, sandbox: Any, number: str = "5550100001", **kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("verified_name", "Acme Support")
    return hook.create_phone_number(sandbox.default_waba_id, "1", number, **kwargs)


class TestConnection:
    def test_connection_is_looked_up_lazily_and_once(self, whatsapp_connection: Any, monkeypatch: Any) -> None:
        calls: list[str] = []
        original = WhatsAppBusinessHook.get_connection

        def counting(conn_id: str) -> Any:
            calls.append(conn_id)
            return original(conn_id)

        monkeypatch.setattr(WhatsAppBusinessHook, "get_connection", staticmethod(counting))
        hook = WhatsAppBusinessHook(retry_policy=FAST_POLICY)
        assert calls == []
        hook.get_phone_number(create(hook, whatsapp_connection)["id"])
        hook.get_phone_number(create(hook, whatsapp_connection, "5550100002")["id"])
        assert calls == ["whatsapp_default"]

    def test_token_is_sent_as_bearer_header_never_in_url(self, hook: WhatsAppBusinessHook, whatsapp_connection: Any):
        node = create(hook, whatsapp_connection)
        hook.get_phone_number(node["id"], fields="status")
        list(hook.list_phone_numbers(whatsapp_connection.default_waba_id, limit=1))
        assert whatsapp_connection.requests
        for request in whatsapp_connection.requests:
            assert request.headers.get("Authorization") == f"Bearer {whatsapp_connection.token}"
            assert whatsapp_connection.token not in request.path
            assert "access_token" not in request.query
            assert request.headers.get("User-Agent") == USER_AGENT

    def test_one_session_is_reused(self, hook: WhatsAppBusinessHook, whatsapp_connection: Any) -> None:
        session = hook.get_conn()
        node = create(hook, whatsapp_connection)
        hook.get_phone_number(node["id"])
        assert hook.get_conn() is session

    def test_the_sessions_own_headers_cookies_and_hooks_still_apply(
        self, hook: WhatsAppBusinessHook, whatsapp_connection: Any
    ) -> None:
        # The hook prepares each request itself: what a user set on get_conn() must still be sent,
        # and the call's own headers must win over the session's.
        session = hook.get_conn()
        session.headers["X-Team"] = "onboarding"
        session.headers["User-Agent"] = "not ours"
        session.cookies.set("team", "blue", domain="127.0.0.1")
        answered: list[int] = []
        session.hooks["response"].append(lambda response, **_: answered.append(response.status_code))
        node = create(hook, whatsapp_connection)
        hook.get_phone_number(node["id"])
        for request in whatsapp_connection.requests:
            assert request.headers.get("X-Team") == "onboarding"
            assert request.headers.get("User-Agent") == USER_AGENT
            assert "team=blue" in request.headers.get("Cookie", "")
        assert answered == [200, 200]

    def test_environment_proxy_is_honoured(self, make_hook: Any, whatsapp_connection: Any, monkeypatch: Any) -> None:
        # The session reads the environment once, when it is made; a proxy on a closed port
        # proves it is used, and NO_PROXY that it is bypassed for the Graph host.
        for name in ("HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
        with pytest.raises(GraphConnectionError):
            make_hook().get_phone_number("123")
        assert whatsapp_connection.requests == []
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        node = create(make_hook(), whatsapp_connection)
        assert node["id"].isdigit()

    def test_environment_ca_bundle_is_honoured(self, make_hook: Any, monkeypatch: Any) -> None:
        monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/company-ca.pem")
        assert make_hook().get_conn().verify == "/etc/ssl/certs/company-ca.pem"
        monkeypatch.delenv("REQUESTS_CA_BUNDLE")
        assert make_hook().get_conn().verify is True

    def test_appsecret_proof_is_signed_on_every_call(
        self, whatsapp_sandbox_factory: Any, monkeypatch: Any, sleeps: Any
    ) -> None:
        sandbox = whatsapp_sandbox_factory(app_secret="sandbox-app-secret-value")
        monkeypatch.setenv("AIRFLOW_CONN_WHATSAPP_DEFAULT", sandbox.airflow_conn_json())
        hook = WhatsAppBusinessHook(retry_policy=FAST_POLICY, sleep=sleeps)
        node = create(hook, sandbox)
        hook.get_phone_number(node["id"])
        expected = hmac.new(b"sandbox-app-secret-value", sandbox.token.encode(), hashlib.sha256).hexdigest()
        assert [r.query.get("appsecret_proof") for r in sandbox.requests] == [expected, expected]

    def test_wrong_app_secret_is_a_permanent_error(
        self, whatsapp_sandbox_factory: Any, monkeypatch: Any, sleeps: Any
    ) -> None:
        sandbox = whatsapp_sandbox_factory(app_secret="the-right-secret")
        monkeypatch.setenv("AIRFLOW_CONN_WHATSAPP_DEFAULT", sandbox.airflow_conn_json({"app_secret": "wrong-secret"}))
        hook = WhatsAppBusinessHook(retry_policy=FAST_POLICY, sleep=sleeps)
        with pytest.raises(GraphPermanentError, match="appsecret_proof") as info:
            create(hook, sandbox)
        assert info.value.code == 100
        assert len(sandbox.requests) == 1

    def test_bad_token_is_code_190_and_not_retried(self, whatsapp_sandbox: Any, monkeypatch: Any, sleeps: Any) -> None:
        conn = whatsapp_sandbox.airflow_conn_json().replace(whatsapp_sandbox.token, "EAAnot-a-real-token-000")
        monkeypatch.setenv("AIRFLOW_CONN_WHATSAPP_DEFAULT", conn)
        hook = WhatsAppBusinessHook(retry_policy=FAST_POLICY, sleep=sleeps)
        with pytest.raises(GraphPermanentError) as info:
            hook.get_phone_number("123")
        assert info.value.code == 190
        assert len(whatsapp_sandbox.requests) == 1
        assert sleeps.waits == []

    @pytest.mark.parametrize(
        ("extra", "field"),
        [
            ({"api_version": "26"}, "api_version"),
            ({"api_version": "v26"}, "api_version"),
            ({"timeout": "-1"}, "timeout"),
            ({"waba_id": "abc"}, "waba_id"),
        ],
    )
    def test_bad_connection_extras_are_named(
        self, whatsapp_sandbox: Any, monkeypatch: Any, extra: dict[str, str], field: str
    ) -> None:
        monkeypatch.setenv("AIRFLOW_CONN_WHATSAPP_DEFAULT", whatsapp_sandbox.airflow_conn_json(extra))
        with pytest.raises(InvalidInputError) as info:
            WhatsAppBusinessHook().get_phone_number("123")
        assert info.value.field == field
        assert whatsapp_sandbox.requests == []

    def test_missing_token_and_host_without_scheme(self, whatsapp_sandbox: Any, monkeypatch: Any) -> None:
        monkeypatch.setenv(
            "AIRFLOW_CONN_WHATSAPP_DEFAULT", '{"conn_type": "whatsapp_business", "host": "http://127.0.0.1:9"}'
        )
        with pytest.raises(InvalidInputError, match="password"):
            WhatsAppBusinessHook().get_phone_number("123")
        monkeypatch.setenv(
            "AIRFLOW_CONN_WHATSAPP_DEFAULT",
            '{"conn_type": "whatsapp_business", "host": "127.0.0.1:9", "password": "EAAtoken-xyz"}',
        )
        with pytest.raises(InvalidInputError, match="host"):
            WhatsAppBusinessHook().get_phone_number("123")

    def test_test_connection_only_reads(self, hook: WhatsAppBusinessHook, whatsapp_connection: Any) -> None:
        ok, message = hook.test_connection()
        assert ok, message
        assert whatsapp_connection.default_waba_id in message
        assert {r.method for r in whatsapp_connection.requests} == {"GET"}
        assert whatsapp_connection.numbers() == []

    def test_test_connection_reports_bad_token(self, whatsapp_sandbox: Any, monkeypatch: Any) -> None:
        conn = whatsapp_sandbox.airflow_conn_json().replace(whatsapp_sandbox.token, "EAAnot-a-real-token-000")
        monkeypatch.setenv("AIRFLOW_CONN_WHATSAPP_DEFAULT", conn)
        ok, message = WhatsAppBusinessHook(retry_policy=FAST_POLICY).test_connection()
        assert not ok
        assert "190" in message


class TestPhoneNumbers:
    def test_create_returns_numeric_id_and_read_after_write(
        self, hook: WhatsAppBusinessHook, whatsapp_connection: Any
    ) -> None:
        node = create(hook, whatsapp_connection, fields="display_phone_number,code_verification_status")
        assert node["id"].isdigit()
        assert node["code_verification_status"] == "NOT_VERIFIED"
        assert "".join(c for c in node["display_phone_number"] if c.isdigit()) == "15550100001"
        assert whatsapp_connection.schema_violations == []

    def test_separators_are_stripped(self, hook: WhatsAppBusinessHook, whatsapp_connection: Any) -> None:
        create(hook, whatsapp_connection, "(555) 010-0003")
        assert whatsapp_connection.requests[0].body["phone_number"] == "5550100003"

    def test_get_with_fields(self, hook: WhatsAppBusinessHook, whatsapp_connection: Any) -> None:
        node_id = create(hook, whatsapp_connection)["id"]
        node = hook.get_phone_number(node_id, fields=["status", "name_status"])
        assert node["id"] == node_id
        assert node["status"] == "PENDING"
        assert whatsapp_connection.requests[-1].query["fields"] == "status,name_status"

    def test_list_follows_every_page(self, hook: WhatsAppBusinessHook, whatsapp_connection: Any) -> None:
        for index in range(23):
            create(hook, whatsapp_connection, f"55501{index:05d}")
        whatsapp_connection.reset_requests()
        nodes = list(hook.list_phone_numbers(whatsapp_connection.default_waba_id, limit=5))
        assert len(nodes) == 23
        assert len({node["id"] for node in nodes}) == 23
        assert len(whatsapp_connection.requests) == 5

    def test_find_phone_number(self, hook: WhatsAppBusinessHook, whatsapp_connection: Any) -> None:
        node_id = create(hook, whatsapp_connection, "5550100007")["id"]
        found = hook.find_phone_number(whatsapp_connection.default_waba_id, "1", "555-010-0007")
        assert found is not None
        assert found["id"] == node_id
        assert hook.find_phone_number(whatsapp_connection.default_waba_id, "1", "5550100008") is None

    def test_unknown_waba_is_permanent_100_subcode_33(
        self, hook: WhatsAppBusinessHook, whatsapp_connection: Any
    ) -> None:
        with pytest.raises(GraphPermanentError) as info:
            hook.create_phone_number("999999999", "1", "5550100001", verified_name="Acme Support")
        assert (info.value.code, info.value.error_subcode) == (100, 33)
        assert info.value.fbtrace_id
        assert len(whatsapp_connection.requests) == 1


class TestErrors:
    @pytest.mark.parametrize(
        ("fault", "error_class", "attempts"),
        [
            (Fault.graph_error(1, message="An unknown error occurred"), GraphTransientError, 4),
            (Fault.graph_error(2, message="Service temporarily unavailable"), GraphTransientError, 4),
            (Fault.graph_error(131000, message="Something went wrong", is_transient=True), GraphTransientError, 4),
            (Fault.http(500, b"oops"), GraphTransientError, 4),
            (Fault.html(502), GraphResponseError, 4),
            (Fault.malformed_json(200), GraphResponseError, 4),
            (Fault.graph_error(80007, message="Rate limit hit"), GraphThrottledError, 4),
            (Fault.graph_error(4, message="Application request limit reached"), GraphThrottledError, 4),
            (Fault.graph_error(100, 33, message="Unsupported get request."), GraphPermanentError, 1),
            (Fault.graph_error(190, 463, message="Session has expired", http_status=401), GraphPermanentError, 1),
            (Fault.graph_error(200, message="(#200) Permissions error", http_status=403), GraphPermanentError, 1),
            (Fault.graph_error(131031, message="Account locked"), GraphPermanentError, 1),
        ],
    )
    def test_retry_count_per_error_class(
        self,
        hook: WhatsAppBusinessHook,
        whatsapp_connection: Any,
        fault: Any,
        error_class: type[GraphAPIError],
        attempts: int,
    ) -> None:
        node_id = create(hook, whatsapp_connection)["id"]
        whatsapp_connection.reset_requests()
        whatsapp_connection.inject(fault, count=10, method="GET")
        with pytest.raises(error_class) as info:
            hook.get_phone_number(node_id)
        assert len(whatsapp_connection.requests) == attempts
        if info.value.code is not None:
            assert info.value.fbtrace_id

    def test_transient_error_then_success(self, hook: WhatsAppBusinessHook, whatsapp_connection: Any, sleeps: Any):
        node_id = create(hook, whatsapp_connection)["id"]
        whatsapp_connection.inject(Fault.graph_error(2, message="Service unavailable"), count=2, method="GET")
        assert hook.get_phone_number(node_id)["id"] == node_id
        assert len(sleeps.waits) == 2

    def test_error_surfaces_code_subcode_message_and_trace(
        self, hook: WhatsAppBusinessHook, whatsapp_connection: Any
    ) -> None:
        whatsapp_connection.inject(
            Fault.graph_error(100, 2388093, message="Invalid parameter", error_user_msg="The number is not valid"),
            method="POST",
        )
        with pytest.raises(GraphPermanentError) as info:
            create(hook, whatsapp_connection)
        text = str(info.value)
        for part in ("Invalid parameter", "code=100", "subcode=2388093", "fbtrace_id=", "The number is not valid"):
            assert part in text
        assert info.value.http_status == 400

    def test_non_json_body_becomes_graph_error_with_excerpt(
        self, hook: WhatsAppBusinessHook, whatsapp_connection: Any
    ) -> None:
        whatsapp_connection.inject(Fault.html(502), count=10, method="GET")
        with pytest.raises(GraphResponseError) as info:
            hook.get_phone_number("123")
        assert info.value.http_status == 502
        assert info.value.excerpt and "<" in info.value.excerpt

    def test_throttle_waits_the_time_announced(
        self, hook: WhatsAppBusinessHook, whatsapp_connection: Any, sleeps: Any
    ) -> None:
        node_id = create(hook, whatsapp_connection)["id"]
        whatsapp_connection.inject(Fault.http(503, b"busy", headers={"Retry-After": "7"}), method="GET")
        hook.get_phone_number(node_id)
        assert sleeps.waits == [7.0]

    def test_throttle_wait_is_capped(self, make_hook: Any, whatsapp_connection: Any, sleeps: Any) -> None:
        hook = make_hook(retry_policy=GraphRetryPolicy(max_attempts=2, max_throttle_wait=3.0, slowdown_wait=0))
        node_id = create(hook, whatsapp_connection)["id"]
        whatsapp_connection.inject(Fault.http(503, b"busy", headers={"Retry-After": "3600"}), method="GET")
        hook.get_phone_number(node_id)
        assert sleeps.waits == [3.0]

    def test_connection_refused_is_retried_then_raised(self, whatsapp_sandbox: Any, monkeypatch: Any, sleeps: Any):
        conn = whatsapp_sandbox.airflow_conn_json().replace(whatsapp_sandbox.url, "http://127.0.0.1:9")
        monkeypatch.setenv("AIRFLOW_CONN_WHATSAPP_DEFAULT", conn)
        hook = WhatsAppBusinessHook(retry_policy=FAST_POLICY, sleep=sleeps)
        with pytest.raises(GraphConnectionError) as info:
            hook.get_phone_number("123")
        assert info.value.request_sent is False
        assert len(sleeps.waits) == FAST_POLICY.max_attempts - 1


class TestRateLimitPacing:
    def test_usage_headers_are_kept_and_the_hook_paces_before_the_limit(
        self, whatsapp_sandbox_factory: Any, monkeypatch: Any
    ) -> None:
        sandbox = whatsapp_sandbox_factory(rate_limit=10, rate_window=60.0)
        monkeypatch.setenv("AIRFLOW_CONN_WHATSAPP_DEFAULT", sandbox.airflow_conn_json())
        waits: list[float] = []

        def sleep_on_sandbox_clock(seconds: float) -> None:
            # The hook's waits move the sandbox's clock instead of the test's wall clock.
            waits.append(seconds)
            sandbox.clock.advance(seconds)

        policy = GraphRetryPolicy(max_attempts=2, slowdown_wait=0.0, max_throttle_wait=120.0)
        hook = WhatsAppBusinessHook(retry_policy=policy, sleep=sleep_on_sandbox_clock)
        node_id = create(hook, sandbox)["id"]
        usage = hook.rate_limit_usage(sandbox.default_waba_id)
        assert usage is not None
        assert usage.percent == 10
        for _ in range(28):
            assert hook.get_phone_number(node_id)["id"] == node_id
        # 29 calls at 10 per window: two full windows waited out, never a call past the limit.
        assert sandbox.rejected_calls == 0
        assert len([wait for wait in waits if wait > 0]) == 2
        assert all(count <= 10 for count in sandbox.calls_per_window.values())
        hook.close()


class TestNoDuplicates:
    @pytest.mark.parametrize(
        "fault",
        [
            Fault.drop(after_apply=True),
            Fault.drop(after_apply=True, reset=True),
            Fault.malformed_json(200),
            Fault.delay(2.0, after_apply=True),
        ],
        ids=["dropped", "reset", "malformed", "read-timeout"],
    )
    def test_ambiguous_create_is_looked_up_not_posted_again(
        self, whatsapp_sandbox: Any, monkeypatch: Any, sleeps: Any, fault: Any
    ) -> None:
        monkeypatch.setenv("AIRFLOW_CONN_WHATSAPP_DEFAULT", whatsapp_sandbox.airflow_conn_json({"timeout": 0.5}))
        hook = WhatsAppBusinessHook(retry_policy=FAST_POLICY, sleep=sleeps)
        whatsapp_sandbox.inject(fault, method="POST", path=CREATE_PATH)
        node = create(hook, whatsapp_sandbox)
        numbers = whatsapp_sandbox.numbers()
        assert [n["id"] for n in numbers] == [node["id"]]
        assert len(whatsapp_sandbox.requests_to(method="POST")) == 1
        hook.close()

    def test_dropped_before_apply_is_posted_again(self, hook: WhatsAppBusinessHook, whatsapp_connection: Any):
        whatsapp_connection.inject(Fault.drop(after_apply=False), method="POST", path=CREATE_PATH)
        node = create(hook, whatsapp_connection)
        assert [n["id"] for n in whatsapp_connection.numbers()] == [node["id"]]
        assert len(whatsapp_connection.requests_to(method="POST")) == 2

    def test_number_already_on_waba_is_code_100(self, hook: WhatsAppBusinessHook, whatsapp_connection: Any):
        create(hook, whatsapp_connection)
        with pytest.raises(GraphPermanentError) as info:
            create(hook, whatsapp_connection)
        assert info.value.code == 100
        assert len(whatsapp_connection.numbers()) == 1


class TestInputIsCheckedBeforeAnyRequest:
    @pytest.mark.parametrize(
        ("kwargs", "field"),
        [
            ({"cc": "+1"}, "cc"),
            ({"cc": "0"}, "cc"),
            ({"cc": "1234"}, "cc"),
            ({"phone_number": "+15550100001"}, "phone_number"),
            ({"phone_number": "555CALLNOW"}, "phone_number"),
            ({"phone_number": "5550100001234567"}, "phone_number"),
            ({"verified_name": "A"}, "verified_name"),
            ({"verified_name": "A" * 76}, "verified_name"),
            ({"waba_id": " "}, "waba_id"),
            ({"waba_id": "waba-1"}, "waba_id"),
            ({"preverified_id": "abc"}, "preverified_id"),
        ],
    )
    def test_bad_create_input(
        self, hook: WhatsAppBusinessHook, whatsapp_connection: Any, kwargs: dict[str, Any], field: str
    ) -> None:
        arguments = {
            "waba_id": whatsapp_connection.default_waba_id,
            "cc": "1",
            "phone_number": "5550100001",
            "verified_name": "Acme Support",
        }
        arguments.update(kwargs)
        with pytest.raises(InvalidInputError) as info:
            hook.create_phone_number(**arguments)
        assert info.value.field == field
        assert field in str(info.value)
        assert whatsapp_connection.requests == []


class TestSecrets:
    def test_token_and_app_secret_never_logged_or_in_errors(
        self, whatsapp_sandbox_factory: Any, monkeypatch: Any, caplog: Any, sleeps: Any
    ) -> None:
        secret = "app-secret-value-0123456789"
        sandbox = whatsapp_sandbox_factory(app_secret=secret)
        monkeypatch.setenv("AIRFLOW_CONN_WHATSAPP_DEFAULT", sandbox.airflow_conn_json())
        hook = WhatsAppBusinessHook(retry_policy=FAST_POLICY, sleep=sleeps)
        errors: list[str] = []
        with caplog.at_level(logging.DEBUG):
            node = create(hook, sandbox)
            sandbox.inject(Fault.graph_error(2, message="flaky"), count=1, method="GET")
            hook.get_phone_number(node["id"])
            for fault in (Fault.graph_error(190, 463, message="expired", http_status=401), Fault.html(502)):
                sandbox.inject(fault, count=10, method="GET")
                try:
                    hook.get_phone_number(node["id"])
                except GraphAPIError as error:
                    errors.append(str(error))
                    errors.append(repr(error))
                sandbox.clear_faults()
        proof = hmac.new(secret.encode(), sandbox.token.encode(), hashlib.sha256).hexdigest()
        haystack = "\n".join([caplog.text, *errors, repr(hook), repr(hook.settings)])
        # Both faults failed the call (str and repr of each): the expired token, then the proxy page.
        assert len(errors) == 4, errors
        assert "code=190" in errors[0] and "subcode=463" in errors[0], errors[0]
        assert "http_status=502" in errors[2], errors[2]
        for needle in (sandbox.token, secret):
            assert needle not in haystack
        # The proof has to travel in the query string, where urllib3's DEBUG lines show it; it is
        # registered with Airflow's masker, which is what task logs pass through.
        assert proof not in "\n".join([*errors, repr(hook), repr(hook.settings)])
        from airflow.providers.common.compat.sdk import redact

        assert proof not in str(redact(caplog.text))
