"""Helpers for the sandbox's own tests: a thin Graph client over ``requests``."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

TIMEOUT = 10.0


class Graph:
    """Calls the sandbox the way a Graph client would: Bearer token, JSON bodies, query params."""

    def __init__(self, sandbox: Any, version: str = "v26.0") -> None:
        self.sandbox = sandbox
        self.version = version
        self.session = requests.Session()

    def url(self, path: str) -> str:
        return f"{self.sandbox.url}/{self.version}/{path.lstrip('/')}"

    def _params(self, params: dict[str, Any] | None, token: str | None) -> dict[str, Any]:
        merged = dict(params or {})
        if self.sandbox.app_secret and token:
            merged.setdefault(
                "appsecret_proof",
                hmac.new(self.sandbox.app_secret.encode(), token.encode(), hashlib.sha256).hexdigest(),
            )
        return merged

    def _headers(self, token: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"} if token else {}

    def get(self, path: str, params: dict[str, Any] | None = None, token: Any = ...) -> requests.Response:
        token = self.sandbox.token if token is ... else token
        return self.session.get(
            self.url(path), params=self._params(params, token), headers=self._headers(token), timeout=TIMEOUT
        )

    def post(
        self, path: str, body: dict[str, Any] | None = None, params: dict[str, Any] | None = None, token: Any = ...
    ) -> requests.Response:
        token = self.sandbox.token if token is ... else token
        return self.session.post(
            self.url(path),
            json=body or {},
            params=self._params(params, token),
            headers=self._headers(token),
            timeout=TIMEOUT,
        )

    def create(self, number: str = "5550100001", cc: str = "1", name: str = "Acme Support", **extra: Any) -> str:
        body: dict[str, Any] = {"cc": cc, "phone_number": number, **extra}
        if name:
            body["verified_name"] = name
        response = self.post(f"{self.sandbox.default_waba_id}/phone_numbers", body)
        assert response.status_code == 200, response.text
        return str(response.json()["id"])

    def verified(self, number: str = "5550100001") -> str:
        number_id = self.create(number)
        assert self.post(f"{number_id}/request_code", {"code_method": "SMS", "language": "en_US"}).ok
        code = self.sandbox.last_code(number_id)
        assert self.post(f"{number_id}/verify_code", {"code": code}).ok
        return number_id

    def register(self, number_id: str, pin: str = "123456") -> requests.Response:
        return self.post(f"{number_id}/register", {"messaging_product": "whatsapp", "pin": pin})

    def close(self) -> None:
        self.session.close()

    @staticmethod
    def error(response: requests.Response) -> dict[str, Any]:
        """The ``error`` object of a Graph error response."""
        body: dict[str, Any] = response.json()
        assert "error" in body, body
        return body["error"]  # type: ignore[no-any-return]


@pytest.fixture
def graph_for() -> Iterator[Callable[[Any], Graph]]:
    """Build clients for sandboxes made by ``whatsapp_sandbox_factory``."""
    clients: list[Graph] = []

    def make(sandbox: Any) -> Graph:
        clients.append(Graph(sandbox))
        return clients[-1]

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def graph(whatsapp_sandbox: Any, graph_for: Callable[[Any], Graph]) -> Graph:
    return graph_for(whatsapp_sandbox)
