"""The Graph API sandbox: a local HTTP server that plays Graph for the WhatsApp Business
phone-number endpoints. This module holds its public face, :class:`GraphSandbox`; the transport,
the endpoints, the rate limits, the faults and the control plane each live in their own module."""

from __future__ import annotations

import json
import re
import secrets
import threading
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from airflow_provider_whatsapp.sandbox.answers import HttpAnswer
from airflow_provider_whatsapp.sandbox.clock import SandboxClock
from airflow_provider_whatsapp.sandbox.control import control_answer, is_control_path
from airflow_provider_whatsapp.sandbox.endpoints.common import GraphCall, SandboxSettings
from airflow_provider_whatsapp.sandbox.endpoints.routes import graph_answer, version_and_path
from airflow_provider_whatsapp.sandbox.faults import Fault, FaultQueue
from airflow_provider_whatsapp.sandbox.inspection import SandboxInspection
from airflow_provider_whatsapp.sandbox.rate_limits import RateLimits
from airflow_provider_whatsapp.sandbox.state import (
    DEFAULT_SCOPES,
    DEFAULT_WABA_ID,
    ReceivedRequest,
    SandboxState,
    TokenInfo,
    Waba,
)
from airflow_provider_whatsapp.sandbox.transport import (
    IncomingRequest,
    SandboxHTTPServer,
    body_parameters,
    last_values,
)

WABA_NAME = "Sandbox WhatsApp Business Account"


class GraphSandbox(SandboxInspection):
    """A local HTTP server that behaves like Graph API for WhatsApp Business phone numbers.

    It serves ``/{version}/...`` like ``https://graph.facebook.com`` (create, read, list numbers,
    request/verify code, register, deregister, set PIN, ``debug_token``), with Graph's errors,
    usage headers and rate limits, plus ``/_sandbox/...`` control endpoints and fault injection.
    All delays run on :attr:`clock`, which tests advance instead of sleeping.

    :param host: interface to bind; loopback only is intended.
    :param port: port to bind; 0 picks a free one.
    :param token: the main access token, reaching every WABA (default: random ``EAAsandbox...``).
    :param app_secret: if set, every call must carry a matching ``appsecret_proof``.
    :param waba_id: ID of the first WABA, the one :meth:`airflow_conn_json` names (numeric).
    :param rate_limit: calls per window each WABA may make (its business-use-case budget);
        ``None`` for no limit. Past it Graph's 80008.
    :param rate_window: the fixed window's length, in sandbox-clock seconds.
    :param rate_window_from_first_call: each WABA's windows start at its own first call instead of
        at the sandbox's start (as a budget nothing spent starts counting when first spent).
    :param fixed_code: the verification code to "send" every time; random when ``None``.
    :param name_review_delay: seconds from create until a pending display name is approved.
    :param connect_delay: seconds from register until the number is ``CONNECTED``.
    :param code_request_cooldown: minimum seconds between two ``request_code`` calls of a number.
    :param wabas: how many WABAs to serve: ``waba_id``, then ``waba_id + 1``, ``waba_id + 2``...
    :param waba_rate_limits: budgets of particular WABAs, by ID, instead of ``rate_limit``.
    :param app_rate_limit: calls per window the whole app may make; ``None`` for no limit. Past it
        Graph's code 4.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        app_secret: str | None = None,
        waba_id: str = DEFAULT_WABA_ID,
        rate_limit: int | None = None,
        rate_window: float = 3600.0,
        rate_window_from_first_call: bool = False,
        fixed_code: str | None = None,
        name_review_delay: float = 0.0,
        connect_delay: float = 0.0,
        code_request_cooldown: float = 60.0,
        wabas: int = 1,
        waba_rate_limits: Mapping[str, int] | None = None,
        app_rate_limit: int | None = None,
    ) -> None:
        if not isinstance(waba_id, str) or not waba_id.isdigit():
            raise ValueError("waba_id must be a string of digits, as Graph's IDs are")
        if isinstance(wabas, bool) or not isinstance(wabas, int) or wabas < 1:
            raise ValueError("wabas must be a whole number, at least 1")
        if rate_window <= 0:
            raise ValueError("rate_window must be positive")
        if fixed_code is not None and not re.fullmatch(r"[0-9]{6}", fixed_code):
            raise ValueError("fixed_code must be 6 digits")
        self.host = host
        self._port = port
        self.token = token or "EAAsandbox" + secrets.token_hex(12)
        self.default_waba_id = waba_id
        self.rate_limit = rate_limit
        self.rate_window = rate_window
        self.rate_window_from_first_call = rate_window_from_first_call
        self.app_rate_limit = app_rate_limit
        self.settings = SandboxSettings(app_secret, fixed_code, name_review_delay, connect_delay, code_request_cooldown)
        self._initial_wabas = [str(int(waba_id) + offset) for offset in range(wabas)]
        unknown = sorted(set(waba_rate_limits or {}) - set(self._initial_wabas))
        if unknown:
            raise ValueError(f"waba_rate_limits names WABAs the sandbox does not serve: {', '.join(unknown)}")
        self._initial_limits: dict[str, int | None] = dict(waba_rate_limits or {})
        #: The sandbox's own time (:class:`.SandboxClock`): code
        #: expiry, review and connect delays, rate-limit windows; ``clock.advance(seconds)`` moves it.
        self.clock = SandboxClock()
        self._window_origin = self.clock.now()
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._faults = FaultQueue()
        self._limits = self._fresh_limits()
        self._state = self._fresh_state()
        self._server: SandboxHTTPServer | None = None
        self._thread: threading.Thread | None = None
        # While set, Graph is unreachable (refuse_connections); the timer ends it.
        self._unreachable = threading.Event()
        self._outage: threading.Timer | None = None
        # Servers closed by an outage: their open connections are shut at stop().
        self._retired: list[SandboxHTTPServer] = []

    # ----------------------------------------------------------------------------- lifecycle

    def _fresh_limits(self) -> RateLimits:
        return RateLimits(
            self.clock,
            self.rate_window,
            self._window_origin,
            default_limit=self.rate_limit,
            waba_limits=self._initial_limits,
            app_limit=self.app_rate_limit,
            from_first_call=self.rate_window_from_first_call,
        )

    def _fresh_state(self) -> SandboxState:
        state = SandboxState()
        for position, waba_id in enumerate(self._initial_wabas, start=1):
            state.wabas[waba_id] = Waba(waba_id, WABA_NAME if position == 1 else f"{WABA_NAME} {position}")
        state.tokens[self.token] = TokenInfo(self.token, None, DEFAULT_SCOPES)
        return state

    def start(self) -> GraphSandbox:
        """Bind and serve in a daemon thread. Does nothing if already started."""
        with self._lock:
            if self._server is not None:
                return self
            self._stopping.clear()
            server = SandboxHTTPServer((self.host, self._port), self._serve)
            self._server = server
            self._port = server.server_address[1]
            self._thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="graph-sandbox", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close keep-alive connections and join the thread (bounded). Idempotent."""
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
            outage, self._outage = self._outage, None
            retired, self._retired = self._retired, []
        if outage is not None:
            outage.cancel()
        self._unreachable.clear()
        if server is None and not retired:
            return
        self._stopping.set()
        for old in retired:
            old.close_connections()
        if server is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5.0)

    def refuse_connections(self, seconds: float) -> None:
        """Be unreachable for ``seconds`` (real time, not :attr:`clock`'s), then serve again on the same port.

        As when the network to Graph fails: new connections are refused; a request arriving on an
        open keep-alive connection is dropped unapplied with a TCP RST (recorded with the fault
        ``unreachable``, so a test can tell the outage met a client); requests already being
        served are answered. Returns at once.

        :param seconds: how long; more than 0.
        """
        if not seconds > 0:
            raise ValueError("seconds must be more than 0")
        with self._lock:
            server, thread = self._server, self._thread
            if server is None or self._outage is not None:
                raise RuntimeError("the sandbox is not serving")
            self._unreachable.set()
            self._server = self._thread = None
            self._retired.append(server)
            outage = self._outage = threading.Timer(seconds, lambda: self._end_outage(outage))
            outage.daemon = True
        # Open keep-alive connections stay open, as they do when a network fails: a client finds
        # out on its next request.
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5.0)
        outage.start()

    def _end_outage(self, outage: threading.Timer) -> None:
        with self._lock:
            if self._outage is not outage:  # stopped meanwhile
                return
            self._outage = None
            # Listening again before it says so: whoever waits for the outage to end finds the
            # port served (requests that arrive meanwhile wait on the lock, then are served).
            self.start()
            self._unreachable.clear()

    @property
    def unreachable(self) -> bool:
        """Whether the sandbox is refusing connections (:meth:`refuse_connections`)."""
        return self._unreachable.is_set()

    def __enter__(self) -> GraphSandbox:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (the configured one before :meth:`start`)."""
        return self._port

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8765`` (no version, no trailing slash)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self._port}"

    @property
    def app_secret(self) -> str | None:
        """The app secret every ``appsecret_proof`` must be made with, if one is required."""
        return self.settings.app_secret

    def airflow_conn_json(self, conn_id_extra: dict[str, Any] | None = None) -> str:
        """The Airflow connection (JSON for ``AIRFLOW_CONN_...``) that reaches this sandbox.

        :param conn_id_extra: entries to add to (or override in) the connection's ``extra``.
        """
        extra: dict[str, Any] = {"api_version": "v26.0", "waba_id": self.default_waba_id}
        if self.app_secret is not None:
            extra["app_secret"] = self.app_secret
        extra.update(conn_id_extra or {})
        return json.dumps({"conn_type": "whatsapp_business", "host": self.url, "password": self.token, "extra": extra})

    def example_dag_environment(self, two_step_pin: str) -> dict[str, str]:
        """Every environment variable the example DAGs in ``dags/`` read, for this sandbox.

        :param two_step_pin: the 6-digit PIN the DAGs register numbers with.
        """
        return {
            "AIRFLOW_CONN_WHATSAPP_DEFAULT": self.airflow_conn_json(),
            # The onboarding, bulk and migration DAGs read the PIN from a Variable...
            "AIRFLOW_VAR_WHATSAPP_TWO_STEP_PIN": two_step_pin,
            # ...and the pre-verified one from a connection's password.
            "AIRFLOW_CONN_WHATSAPP_TWO_STEP_PIN": json.dumps({"conn_type": "generic", "password": two_step_pin}),
            # The scheduled onboarding DAG reads the codes this sandbox sends (its demo path).
            "AIRFLOW_VAR_WHATSAPP_ONBOARDING_CODE_SOURCE": "sandbox",
        }

    # ---------------------------------------------------------------------- state and control

    def reset(self) -> None:
        """Back to the constructor's state: its WABAs and budgets, the main token, no numbers,
        requests, faults or counted calls."""
        with self._lock:
            self._state = self._fresh_state()
            self._limits = self._fresh_limits()
            self._faults.clear()

    @property
    def waba_ids(self) -> list[str]:
        """The IDs of the WABAs served, the default one first."""
        with self._lock:
            return list(self._state.wabas)

    def add_waba(self, waba_id: str | None = None, name: str = WABA_NAME, rate_limit: int | None = None) -> str:
        """Add a WABA and return its ID.

        :param waba_id: its ID; the next free ``default_waba_id + n`` when ``None``.
        :param name: its name.
        :param rate_limit: its calls per window; the sandbox's ``rate_limit`` when ``None``.
        """
        with self._lock:
            if waba_id is None:
                candidate = int(self.default_waba_id) + len(self._state.wabas)
                while str(candidate) in self._state.wabas:
                    candidate += 1
                waba_id = str(candidate)
            if rate_limit is not None:
                self._limits.set_limit(waba_id, rate_limit)
            self._state.wabas[waba_id] = Waba(waba_id, name)
            return waba_id

    def add_token(
        self, token: str, waba_ids: Iterable[str] | None = None, scopes: Iterable[str] = DEFAULT_SCOPES
    ) -> str:
        """Add an access token and return it.

        :param token: the token string.
        :param waba_ids: the WABAs it reaches; ``None`` for all.
        :param scopes: its permissions.
        """
        with self._lock:
            reach = None if waba_ids is None else frozenset(waba_ids)
            self._state.tokens[token] = TokenInfo(token, reach, tuple(scopes))
            return token

    def expire_token(self, token: str) -> None:
        """Make ``token`` answer 190/463 "Session has expired" from now on."""
        with self._lock:
            info = self._state.tokens.get(token)
            if info is None:
                info = self._state.tokens[token] = TokenInfo(token, None)
            info.expired = True

    def inject(self, fault: Fault, *, count: int = 1, method: str | None = None, path: str | None = None) -> None:
        """Apply ``fault`` to the next ``count`` matching Graph requests.

        :param fault: what to do, see :class:`.Fault`.
        :param count: how many requests.
        :param method: only requests with this HTTP method.
        :param path: only requests whose path without ``/vNN.N`` matches this regex (``re.search``).
        """
        with self._lock:
            self._faults.add(fault, count, method, path)

    def clear_faults(self) -> None:
        """Drop all pending faults."""
        with self._lock:
            self._faults.clear()

    def rate_limit_snapshot(self) -> dict[str, Any]:
        """What ``GET /_sandbox/rate_limits`` answers: budgets, calls served and refused."""
        with self._lock:
            return {
                "window": self.rate_window,
                "window_start": self.rate_window_start,
                "current_window": self._limits.current_window(),
                "limits": {waba_id: self._limits.limit_for(waba_id) for waba_id in self._state.wabas},
                "app_limit": self.app_rate_limit,
                "calls_per_window": [[w, index, n] for (w, index), n in self._limits.calls_per_window.items()],
                "app_calls_per_window": [[index, n] for index, n in self._limits.app_calls_per_window.items()],
                "rejections": [vars(rejection) for rejection in self._limits.rejections],
            }

    def state_snapshot(self) -> dict[str, Any]:
        """What ``GET /_sandbox/state`` answers."""
        with self._lock:
            return {
                "url": self.url,
                "default_waba_id": self.default_waba_id,
                "waba_ids": list(self._state.wabas),
                "clock_offset": self.clock.offset,
                "wabas": [waba.node() for waba in self._state.wabas.values()],
                "numbers": self.numbers(),
                "counts": {
                    "wabas": len(self._state.wabas),
                    "numbers": len(self._state.numbers),
                    "requests": len(self._state.requests),
                    "schema_violations": len(self._state.violations),
                    "faults_pending": len(self._faults),
                },
                "rejected_calls": len(self._limits.rejections),
                "rejected_calls_by_waba": self.rejected_calls_by_waba(),
                "schema_violations": [vars(v) for v in self._state.violations],
            }

    # ------------------------------------------------------------------------------- serving

    def _serve(self, request: IncomingRequest) -> HttpAnswer:
        """Serve one request: control endpoint, fault, or Graph call. Runs in a handler thread."""
        parts = urlsplit(request.target)
        path = parts.path or "/"
        query = last_values(parse_qs(parts.query, keep_blank_values=True))
        body, body_error = body_parameters(request.headers, request.body)
        if self._unreachable.is_set() and is_control_path(path):
            return HttpAnswer.dropped(reset=True)
        if is_control_path(path):
            return control_answer(self, request.method, path, body)
        version, graph_path = version_and_path(path)
        record = ReceivedRequest(
            request.method, graph_path, query, body, request.headers, time=self.clock.now(), version=version
        )
        with self._lock:
            self._state.requests.append(record)
            unreachable = self._unreachable.is_set()
            fault = None if unreachable else self._faults.take(request.method, graph_path)
        if unreachable:
            record.fault = "unreachable"
            return HttpAnswer.dropped(reset=True)
        if fault is not None:
            record.fault = fault.name
            early = fault.early_answer(self._stopping.wait)
            if early is not None:
                record.status = None if early.drop else early.status
                return early
        with self._lock:
            call = GraphCall(
                method=request.method,
                version=version,
                path=graph_path,
                query=query,
                params={**query, **body},
                headers=request.headers,
                host=request.host or f"{self.host}:{self._port}",
                state=self._state,
                clock=self.clock,
                settings=self.settings,
            )
            answer = graph_answer(call, self._limits, body_error)
        record.status, record.waba_id = answer.status, call.waba_id
        if fault is not None:
            answer = fault.final_answer(answer, self._stopping.wait)
            record.status = None if answer.drop else answer.status
        return answer


__all__ = ["GraphSandbox"]
