"""Prometheus metrics and health probes for one worker, served over a tiny HTTP server.

``kq worker --metrics-port`` starts it in a daemon thread: ``/metrics`` (Prometheus text
format 0.0.4), ``/healthz`` (liveness: the loop steps and the broker connection is up) and
``/readyz`` (readiness: consuming). The format is written by hand, so the kernel needs no
client library; an exporter process is not needed either. Queue depth is read through a
transport of the server's own, since the worker's connection belongs to its loop thread.
"""

from __future__ import annotations

import logging
import threading
import time
from http.server import ThreadingHTTPServer

from ..exceptions import ConfigurationError
from ..httpd import Handler
from .metrics import BUCKETS, STATES
from .worker import Worker

log = logging.getLogger("kq.worker")

#: Seconds a queue depth read is reused, so frequent scrapes do not load the broker.
DEPTH_TTL = 5.0
#: A loop that has not stepped for this long is stuck (a healthy one steps at least every
#: second or so: each fetch and wait is bounded by the worker's poll interval).
STUCK_AFTER = 10.0


def health(worker: Worker) -> str | None:
    """Why the worker is unhealthy, or ``None`` when it is healthy."""
    if not worker.wait_ready(0):
        return "worker starting"
    if worker.stopping:
        return None  # finishing its tasks: alive, and /readyz says it takes no more
    down_since = worker.broker_down_since
    now = time.monotonic()
    if down_since is not None:
        return f"broker connection down for {now - down_since:.0f} s"
    idle = now - worker.last_step
    if idle > STUCK_AFTER:
        return f"worker loop stuck for {idle:.0f} s"
    return None


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return repr(float(value)) if isinstance(value, float) else str(value)


class Exposition:
    """Renders the worker's metrics; caches queue depths for :data:`DEPTH_TTL` seconds."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self._lock = threading.Lock()
        self._depths: dict[str, int] = {}
        self._depths_at = -DEPTH_TTL

    def depths(self) -> dict[str, int]:
        """Ready messages per consumed queue, through a short-lived connection; empty if the
        broker cannot be reached (``kq_broker_connected`` tells why)."""
        with self._lock:
            if time.monotonic() - self._depths_at >= DEPTH_TTL:
                self._depths_at = time.monotonic()
                try:
                    transport = self.worker.app.new_transport()
                    try:
                        self._depths = {q: transport.depth(q) for q in self.worker.queues}
                    finally:
                        transport.close()
                except Exception as exc:
                    log.debug("kq: metrics could not read queue depths: %s", exc)
                    self._depths = {}
            return self._depths

    def render(self) -> str:
        worker = self.worker
        lines = [
            "# HELP kq_tasks_total Tasks seen by this worker, by task name and state.",
            "# TYPE kq_tasks_total counter",
        ]
        for task, counts in sorted(worker.task_metrics.counts().items()):
            name = _label(task)
            lines.extend(
                f'kq_tasks_total{{task="{name}",state="{state}"}} {count}'
                for state, count in zip(STATES, counts, strict=True)
            )
        lines += [
            "# HELP kq_task_runtime_seconds Runtime of tasks that ran (succeeded, failed or retried).",
            "# TYPE kq_task_runtime_seconds histogram",
        ]
        for task, values in sorted(worker.task_metrics.runtimes().items()):
            name, total = _label(task), 0
            for bound, count in zip((*map(repr, BUCKETS), "+Inf"), values[:-1], strict=True):
                total += int(count)  # a bucket's count (the list's last item is the sum)
                lines.append(f'kq_task_runtime_seconds_bucket{{task="{name}",le="{bound}"}} {total}')
            lines.append(f'kq_task_runtime_seconds_sum{{task="{name}"}} {_number(values[-1])}')
            lines.append(f'kq_task_runtime_seconds_count{{task="{name}"}} {total}')
        lines += [
            "# HELP kq_queue_depth Messages ready in each queue this worker consumes.",
            "# TYPE kq_queue_depth gauge",
        ]
        lines.extend(
            f'kq_queue_depth{{queue="{_label(q)}"}} {depth}' for q, depth in sorted(self.depths().items())
        )
        problem = health(worker)
        for name, help_text, value in (
            ("kq_prefetched", "Messages fetched and waiting for a pool slot.", worker.reserved_count),
            ("kq_active", "Tasks running now.", worker.running_count),
            ("kq_pool_size", "Tasks the pool runs at once.", worker.concurrency),
            ("kq_worker_up", "1 while the worker is healthy (what /healthz answers).", int(problem is None)),
            (
                "kq_broker_connected",
                "1 while the worker's broker connection is up.",
                int(worker.wait_ready(0) and worker.broker_down_since is None),
            ),
        ):
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {value}"]
        return "\n".join(lines) + "\n"


class _Handler(Handler):
    server: ProbeServer
    label = "metrics"

    def do_GET(self) -> None:  # noqa: N802 - the name http.server dispatches to
        worker = self.server.exposition.worker
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._reply(200, self.server.exposition.render(), "text/plain; version=0.0.4")
        elif path == "/healthz":
            problem = health(worker)
            self._reply(503 if problem else 200, f"{problem or 'ok'}\n")
        elif path == "/readyz":
            ready = worker.wait_ready(0) and not worker.stopping
            reason = "shutting down" if worker.stopping else "starting"
            self._reply(200 if ready else 503, "ok\n" if ready else f"{reason}\n")
        else:
            self._reply(404, "not found: try /metrics, /healthz or /readyz\n")

    def _reply(self, status: int, body: str, content_type: str = "text/plain") -> None:
        self.send_body(status, body.encode(), content_type)


class ProbeServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, worker: Worker, host: str, port: int) -> None:
        self.exposition = Exposition(worker)
        super().__init__((host, port), _Handler)


def serve_probes(worker: Worker, host: str, port: int) -> ProbeServer:
    """Serve ``/metrics``, ``/healthz`` and ``/readyz`` for ``worker`` from a daemon thread;
    call ``shutdown()`` then ``server_close()`` on the result to stop."""
    try:
        server = ProbeServer(worker, host, port)
    except OSError as exc:
        raise ConfigurationError(f"worker_metrics_port: cannot listen on {host}:{port}: {exc}") from None
    thread = threading.Thread(target=server.serve_forever, name="kq-metrics", daemon=True)
    thread.start()
    log.info("kq: metrics and health probes on http://%s:%d/metrics", host, server.server_port)
    return server
