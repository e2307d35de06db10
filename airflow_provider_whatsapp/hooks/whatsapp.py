"""Hook for the WhatsApp Business phone-number endpoints of Meta's Graph API."""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from typing import Any, TypeVar, cast

import requests
from airflow.providers.common.compat.sdk import BaseHook
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from airflow_provider_whatsapp.exceptions import (
    BudgetWaitRequired,
    GraphAPIError,
    GraphConnectionError,
    GraphPermanentError,
)
from airflow_provider_whatsapp.hooks import calls
from airflow_provider_whatsapp.hooks.calls import LIST_PAGE_SIZE, GraphCall
from airflow_provider_whatsapp.hooks.connection import (
    CONN_TYPE,
    DEFAULT_CONN_ID,
    mask_secret_value,
    settings_from_connection,
    shared_view_for,
)
from airflow_provider_whatsapp.hooks.driving import conversation_steps, graph_exchange
from airflow_provider_whatsapp.hooks.exchange import (
    GraphExchange,
    RawResponse,
    Send,
    Sleep,
)
from airflow_provider_whatsapp.hooks.graph import (
    GraphRequest,
    GraphRetryPolicy,
    GraphSettings,
    connection_error,
)
from airflow_provider_whatsapp.hooks.metrics import StatsObserver
from airflow_provider_whatsapp.hooks.shared_view import Share, SharedView, run_share
from airflow_provider_whatsapp.hooks.usage import USAGE_STORE, CallScope, ConnectionKey, UsageReading
from airflow_provider_whatsapp.hooks.waiters import waiter_name

T = TypeVar("T")


def _sent_before_failure(exc: requests.RequestException) -> bool:
    """Whether a transport error happened after the request could have reached the server."""
    if isinstance(exc, requests.ConnectTimeout):
        return False
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, (NewConnectionError, ConnectTimeoutError, ConnectionRefusedError)):
            return False
        pending.extend([current.__cause__, current.__context__, getattr(current, "reason", None)])
        pending.extend(arg for arg in current.args if isinstance(arg, BaseException))
    return True


class WhatsAppBusinessHook(BaseHook):
    """
    Talk to the WhatsApp Business phone-number endpoints of Meta's Graph API.

    The connection holds the access token in ``password``; ``host`` defaults to
    ``https://graph.facebook.com``; extras: ``api_version`` (``vNN.N``, default ``v26.0``),
    ``app_secret`` (signs every call with ``appsecret_proof``), ``waba_id`` (default WhatsApp
    Business Account) and ``timeout`` (seconds). Any field of :class:`.GraphRetryPolicy` may also be
    set as an extra (for example ``max_attempts`` or ``usage_threshold``).

    Every call is paced by the rate-limit usage Graph last reported for the budgets it spends: the
    app's (``X-App-Usage``) and its WABA's (``X-Business-Use-Case-Usage``), kept once per process
    for every hook and trigger. Transient errors, 5xx and connection failures are retried with
    exponential backoff and jitter; throttles wait the time Graph announced; permanent errors are
    raised at once. A POST that failed in a way that may have been applied is looked up before it
    is sent again, so a retry never creates a second number.

    :param whatsapp_conn_id: the Airflow connection to use.
    :param retry_policy: how to retry and pace calls; defaults to the connection's extras, then
        to :class:`.GraphRetryPolicy` defaults.
    :param sleep: the function used to wait (tests and benchmarks may pass their own).
    :param logger_name: name of the hook's logger, as for every Airflow hook.
    """

    conn_name_attr = "whatsapp_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = CONN_TYPE
    hook_name = "WhatsApp Business"

    def __init__(
        self,
        whatsapp_conn_id: str = default_conn_name,
        *,
        retry_policy: GraphRetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        logger_name: str | None = None,
    ) -> None:
        super().__init__(logger_name=logger_name)
        self.whatsapp_conn_id = whatsapp_conn_id
        self._retry_policy = retry_policy
        self._sleep = sleep
        self._settings: GraphSettings | None = None
        self._session: requests.Session | None = None
        self._connection_key: ConnectionKey | None = None
        #: Set by operators: a wait for a budget longer than the policy's ``defer_wait_over``
        #: raises :class:`~airflow_provider_whatsapp.exceptions.BudgetWaitRequired` instead of sleeping.
        self.defer_budget_waits = False
        #: The name under which this hook's calls held back for a spent budget take their place
        #: among its waiters; an operator carries it across its deferral, so that the place is
        #: still its own when it comes back.
        self.budget_waiter = waiter_name()
        #: Set with ``budget_waiter`` when it took a place before: the next call gives it up.
        self.budget_waiter_holds_place = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}(whatsapp_conn_id={self.whatsapp_conn_id!r})"

    # ------------------------------------------------------------------ connection

    @property
    def settings(self) -> GraphSettings:
        """The connection's settings, looked up once per hook on first use."""
        if self._settings is None:
            settings, policy = settings_from_connection(self.get_connection(self.whatsapp_conn_id))
            self._retry_policy = self._retry_policy or policy
            self._settings = settings
        return self._settings

    @property
    def retry_policy(self) -> GraphRetryPolicy:
        """The retry and pacing policy in force."""
        if self._retry_policy is None:
            _ = self.settings
        assert self._retry_policy is not None
        return self._retry_policy

    @property
    def default_waba_id(self) -> str | None:
        """The connection's ``waba_id`` extra, if any."""
        return self.settings.waba_id

    @property
    def connection_key(self) -> ConnectionKey:
        """Whose rate-limit budgets this hook's calls spend."""
        if self._connection_key is None:
            self._connection_key = ConnectionKey(self.settings.host, self.settings.app_fingerprint)
        return self._connection_key

    def rate_limit_usage(self, waba_id: str | None = None) -> UsageReading | None:
        """The latest usage Graph reported for a WABA's budget, or for the app's when ``waba_id`` is None."""
        if waba_id is None:
            return USAGE_STORE.app_reading(self.connection_key)
        return USAGE_STORE.business_reading(self.connection_key, waba_id)

    def note_waba(self, phone_number_id: str, waba_id: str | None) -> None:
        """Tell the pacing which WABA a number belongs to, before its first call (``None``: unknown)."""
        if waba_id:
            USAGE_STORE.learn_waba(self.connection_key, phone_number_id, waba_id)

    def get_conn(self) -> requests.Session:
        """
        Return the hook's one ``requests.Session``, reused for every call.

        The environment's proxies (``HTTPS_PROXY``, ``NO_PROXY``, ...) and CA bundle
        (``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE``) are read once, here, for the connection's
        host, rather than on every call as ``requests`` does by default: scanning the environment
        cost each call more than the rest of the hook. ``.netrc`` is not read: its credentials
        would replace the token every call carries.
        """
        if self._session is None:
            session = requests.Session()
            session.trust_env = False
            session.proxies.update(requests.utils.get_environ_proxies(self.settings.host))
            ca_bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
            if ca_bundle:
                session.verify = ca_bundle
            self._session = session
        return self._session

    def close(self) -> None:
        """Close the session's pooled connections."""
        if self._session is not None:
            self._session.close()
            self._session = None

    # ------------------------------------------------------------------ transport

    def _transport(self, request: GraphRequest) -> RawResponse | GraphConnectionError:
        session = self.get_conn()
        # Prepared here from the session's headers, cookies, auth and hooks, as Session.request
        # would, without its per-call merging of every setting (a fresh cookie jar and a
        # protocol check of each mapping), which cost more than the rest of the hook.
        prepared = requests.PreparedRequest()
        try:
            prepared.prepare(
                method=request.method,
                url=request.url_with_query,
                headers={**session.headers, **request.headers},
                json=request.json_body,
                params=session.params or None,
                auth=session.auth,
                cookies=session.cookies,
                hooks=session.hooks,
            )
            response = session.send(prepared, timeout=self.settings.timeout, allow_redirects=False)
        except requests.RequestException as exc:
            return connection_error(exc, request_sent=_sent_before_failure(exc))
        return RawResponse(response.status_code, response.headers, response.content)

    def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Mapping[str, Any] | None = None,
        scope: CallScope | None = None,
        accept_after_uncertain: Callable[[GraphAPIError], bool] | None = None,
        numbers_of: str | None = None,
    ) -> dict[str, Any]:
        """
        Send one Graph call with the hook's retry and pacing policy and return its JSON object.

        :param method: ``GET`` or ``POST``.
        :param path: the path after the version, for example ``123/phone_numbers``.
        :param params: query parameters (``fields``, ``limit``, ...).
        :param body: the JSON body of a POST.
        :param scope: the WABA or number the call is about, so it is paced by that WABA's budget.
        :param accept_after_uncertain: for a POST whose effect cannot be read back: an error
            answered after a failure that may have been applied, that shows it was
            (``{"success": True}`` is returned instead).
        :param numbers_of: the WABA whose phone numbers the answer holds, for pacing their calls.
        """
        graph_call = calls.GraphCall(
            method,
            path,
            params=params,
            body=body,
            scope=scope or CallScope(),
            accept_after_uncertain=accept_after_uncertain,
            numbers_of=numbers_of,
        )
        return self.converse(calls.one_call(graph_call))

    def converse(self, conversation: Generator[Any, Any, T], answer: Callable[[Any], Any] | None = None) -> T:
        """
        Drive a conversation (see :mod:`~airflow_provider_whatsapp.hooks.calls`) to its result.

        :param conversation: yields :class:`~airflow_provider_whatsapp.hooks.calls.GraphCall` s,
            each sent with the hook's retry and pacing policy (see
            :func:`~airflow_provider_whatsapp.hooks.driving.conversation_steps`).
        :param answer: answers whatever else the conversation yields.
        """
        steps = conversation_steps(conversation, self._exchange_for)
        reply: Any = None
        try:
            while True:
                action = steps.send(reply)
                if isinstance(action, Send):
                    reply = self._transport(action.request)
                elif isinstance(action, Sleep):
                    over = self.retry_policy.defer_wait_over
                    if action.for_budget and self.defer_budget_waits and max(action.seconds, action.held) > over:
                        # Short waits that add up are deferred as long again as they lasted.
                        raise BudgetWaitRequired(max(action.seconds, over))
                    self._sleep(action.seconds)
                    reply = None
                elif isinstance(action, Share):
                    assert self.shared_view is not None
                    reply = run_share(self.shared_view.backend, action)
                elif answer is not None:
                    reply = answer(action)
                else:
                    raise TypeError(f"the conversation needs {type(action).__name__}, which only a graph call can be")
        except StopIteration as done:
            return cast(T, done.value)

    def _exchange_for(self, graph_call: GraphCall) -> GraphExchange:
        for secret in graph_call.secrets:
            mask_secret_value(secret)
        if graph_call.note:
            self.log.info("%s", graph_call.note)
        holds_place, self.budget_waiter_holds_place = self.budget_waiter_holds_place, False
        return graph_exchange(
            self.settings,
            graph_call,
            policy=self.retry_policy,
            connection=self.connection_key,
            log=self.log,
            shared=self.shared_view,
            observer=self.observer,
            waiter=self.budget_waiter,
            holds_place=holds_place,
        )

    @functools.cached_property
    def observer(self) -> StatsObserver:
        """Reports this hook's calls as Airflow metrics."""
        return StatsObserver(self.whatsapp_conn_id)

    @property
    def shared_view(self) -> SharedView | None:
        """The deployment's shared view of the budgets this hook's calls spend (see ``budget_store``)."""
        return shared_view_for(self.settings.budget_store)

    def release_budget_leases(self) -> None:
        """Hand back the budget leases this process holds: a task whose Graph work is done does not
        keep the others out until its leases run out."""
        if self._settings is None:
            return
        view = self.shared_view
        if view is not None:
            for share in view.release_all():
                run_share(view.backend, share)

    # ------------------------------------------------------------------ phone numbers

    def create_phone_number(
        self,
        waba_id: str,
        cc: str,
        phone_number: str,
        verified_name: str | None = None,
        migrate_phone_number: bool = False,
        preverified_id: str | None = None,
        fields: str | list[str] | None = None,
    ) -> dict[str, Any]:
        """
        Create a phone number on a WhatsApp Business Account: ``POST /{waba_id}/phone_numbers``.

        Returns Graph's answer: ``{"id": ...}``, plus the requested ``fields`` of the new node
        (read-after-write). A failure that may have been applied is looked up before retrying.
        """
        return self.converse(
            calls.create_phone_number(
                waba_id, cc, phone_number, verified_name, migrate_phone_number, preverified_id, fields
            )
        )

    def get_phone_number(
        self, phone_number_id: str, fields: str | list[str] | None = None, *, waba_id: str | None = None
    ) -> dict[str, Any]:
        """Read a phone-number node: ``GET /{phone_number_id}``; ``waba_id``, if known, paces it."""
        return self.converse(calls.get_phone_number(phone_number_id, fields, waba_id=waba_id))

    def list_phone_numbers(
        self, waba_id: str, fields: str | list[str] | None = None, limit: int = LIST_PAGE_SIZE
    ) -> Iterator[dict[str, Any]]:
        """Every phone number of a WABA, all pages read: ``GET /{waba_id}/phone_numbers``."""
        return iter(self.converse(calls.list_phone_numbers(waba_id, fields, limit)))

    def find_phone_number(
        self, waba_id: str, cc: str, phone_number: str, fields: str | list[str] | None = None
    ) -> dict[str, Any] | None:
        """Return the WABA's node for ``cc`` + ``phone_number``, or ``None`` when it has none."""
        return self.converse(calls.find_phone_number(waba_id, cc, phone_number, fields))

    # ------------------------------------------------------------------ onboarding lifecycle

    def request_verification_code(
        self, phone_number_id: str, code_method: str = "SMS", language: str = "en_US"
    ) -> dict[str, Any]:
        """
        Ask Graph to send a verification code: ``POST /{phone_number_id}/request_code``.

        After a failure that may have been applied, Graph's "code requested too often" answer
        (136024) means the first request went through, and counts as success.
        """
        return self.converse(calls.request_verification_code(phone_number_id, code_method, language))

    def verify_code(self, phone_number_id: str, code: str) -> dict[str, Any]:
        """Submit the verification code: ``POST /{phone_number_id}/verify_code``."""
        return self.converse(calls.verify_code(phone_number_id, code))

    def register_phone_number(
        self,
        phone_number_id: str,
        pin: str,
        data_localization_region: str | None = None,
        *,
        check_first: bool = True,
    ) -> dict[str, Any]:
        """
        Register the number for Cloud API messaging: ``POST /{phone_number_id}/register``.

        Graph allows 10 register calls per number per 72 hours, and a number registered again
        spends one. With ``check_first`` (the default, and what a retried task must do), a number
        already registered (``CONNECTED``, or on ``CLOUD_API`` and not connected yet) is not
        registered again: its two-step PIN is set to ``pin`` instead, so the outcome is the same.
        A first attempt that knows the number was never registered passes ``check_first=False``
        and saves the read. A failure that may have been applied is always looked up before the
        call is sent again. The 72-hour block (133016) raises
        :class:`~airflow_provider_whatsapp.exceptions.GraphBlockedError` at once, saying when the
        block ends.
        """
        return self.converse(
            calls.register_phone_number(phone_number_id, pin, data_localization_region, check_first=check_first)
        )

    def set_two_step_pin(self, phone_number_id: str, pin: str) -> dict[str, Any]:
        """Set the two-step verification PIN: ``POST /{phone_number_id}`` (idempotent)."""
        return self.converse(calls.set_two_step_pin(phone_number_id, pin))

    def deregister_phone_number(self, phone_number_id: str) -> dict[str, Any]:
        """Deregister the number from Cloud API: ``POST /{phone_number_id}/deregister``."""
        return self.converse(calls.deregister_phone_number(phone_number_id))

    def test_connection(self) -> tuple[bool, str]:
        """Check the token with a read-only call (the WABA when the connection names one)."""
        try:
            settings = self.settings
            if settings.waba_id:
                node = self.call(
                    "GET", settings.waba_id, params={"fields": "id,name"}, scope=CallScope(waba_id=settings.waba_id)
                )
                return True, (
                    f"Connected to WhatsApp Business Account {node.get('name', '')} ({node.get('id')}) "
                    f"with Graph {settings.api_version}"
                )
            node = self.call("GET", "me", params={"fields": "id,name"})
            return True, f"Connected as {node.get('name', '')} ({node.get('id')}) with Graph {settings.api_version}"
        except GraphPermanentError as error:
            return False, str(error)
        except Exception as error:
            return False, f"{type(error).__name__}: {error}"

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Field behaviour of the connection form (also declared in the provider info)."""
        from airflow_provider_whatsapp.get_provider_info import CONNECTION_UI_FIELD_BEHAVIOUR

        return {
            "hidden_fields": CONNECTION_UI_FIELD_BEHAVIOUR["hidden-fields"],
            "relabeling": CONNECTION_UI_FIELD_BEHAVIOUR["relabeling"],
            "placeholders": CONNECTION_UI_FIELD_BEHAVIOUR["placeholders"],
        }
