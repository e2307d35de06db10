"""Graph's calls, refusals, waits and budgets as Airflow metrics, so a platform team sees them.

Sent through Airflow's ``Stats`` (StatsD or OpenTelemetry, as the deployment is set up), tagged
with the connection and the WABA (``app`` for the app's own budget); tags reach StatsD only when
its tagging is on, so the usage gauges also carry the budget in their name:

- ``whatsapp.graph.calls``: a call sent (counter);
- ``whatsapp.graph.refused``: a call Graph refused for a rate limit (counter, tag ``code``);
- ``whatsapp.graph.wait``: time a call was held back (timer, tag ``kind``: ``budget`` before it
  was sent, ``throttle`` after a refusal, ``backoff`` after a transient error);
- ``whatsapp.usage.<waba_id or app>``: the latest usage Graph reported, in percent (gauge).
"""

from __future__ import annotations

from datetime import timedelta


class StatsObserver:
    """
    Reports one connection's calls to Airflow's ``Stats``; a metric that cannot be sent is dropped.

    :param conn_id: the Airflow connection the calls go through (a tag of every metric).
    """

    def __init__(self, conn_id: str) -> None:
        from airflow.providers.common.compat.sdk import Stats

        self.stats = Stats
        self.conn_id = conn_id

    def _tags(self, waba_id: str | None, **more: str) -> dict[str, str]:
        return {"conn_id": self.conn_id, "waba_id": waba_id or "unknown", **more}

    def sent(self, waba_id: str | None) -> None:
        self.stats.incr("whatsapp.graph.calls", tags=self._tags(waba_id))

    def refused(self, waba_id: str | None, code: int | None) -> None:
        self.stats.incr("whatsapp.graph.refused", tags=self._tags(waba_id, code=str(code)))

    def waited(self, waba_id: str | None, seconds: float, kind: str) -> None:
        self.stats.timing("whatsapp.graph.wait", timedelta(seconds=seconds), tags=self._tags(waba_id, kind=kind))

    def usage(self, waba_id: str | None, percent: float) -> None:
        budget = waba_id or "app"
        self.stats.gauge(f"whatsapp.usage.{budget}", percent, tags=self._tags(waba_id, budget=budget))
