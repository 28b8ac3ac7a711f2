"""Every ``FASTNER_*`` environment setting in one table: name, default, meaning.

The library, the CLI, the service and gunicorn's config all read their settings
through ``setting(name)``, so a value is parsed and checked in one way, and
``fastner serve --help`` and docs/deployment.md's table are printed from ``SETTINGS``.
"""
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Setting:
    name: str
    default: object          # None: unset unless the environment sets it
    kind: type               # int, float or str
    help: str
    minimum: float | None = None


SETTINGS = [
    Setting("FASTNER_MODEL", None, str,
            "model name (fast, accurate) or file (.npz); unset: fast, the model shipped with "
            "fastner"),
    Setting("FASTNER_CACHE_MB", 64.0, float,
            "inference-cache budget in MB per process; 0 turns the cache off", 0),
    Setting("FASTNER_BLAS_THREADS", 1, int,
            "BLAS threads per process, set when a model loads and by the CLI; tagging's small "
            "products run 2-3x slower with more. 0 leaves BLAS as it is", 0),
    Setting("FASTNER_BIND", "127.0.0.1:8000", str,
            "address gunicorn listens on (host:port or unix:PATH)"),
    Setting("FASTNER_WORKERS", 2, int, "gunicorn worker processes", 1),
    Setting("FASTNER_WORKER_CLASS", "sync", str,
            "gunicorn worker class: sync (a worker takes a connection only when free) or "
            "gthread (keeps connections alive, but one busy worker may hoard them)"),
    Setting("FASTNER_THREADS", 1, int, "threads per worker, gthread only", 1),
    Setting("FASTNER_ACCESS_LOG", None, str, "gunicorn access log ('-' for stdout); unset: off"),
    Setting("FASTNER_MAX_BODY_BYTES", 1_000_000, int, "larger request bodies get 413", 1),
    Setting("FASTNER_MAX_CHARS", 250_000, int,
            "characters of text in one request (all texts, or all tokens with one space "
            "between); more get 413 before any tokenizing", 1),
    Setting("FASTNER_MAX_TEXTS", 256, int, "items in 'texts' or 'tokens'; more get 413", 1),
    Setting("FASTNER_MAX_TOKENS", 50_000, int, "tokens in one request; more get 413", 1),
    Setting("FASTNER_DRAIN_SECONDS", 5.0, float,
            "on SIGTERM, /readyz answers 503 this long while requests are still served; "
            "then the service stops", 0),
    Setting("FASTNER_DRAIN_FILE", None, str,
            "while this file exists, /readyz answers 503 (draining); fastner serve sets a "
            "temporary one and creates it on SIGTERM, and an orchestrator may create it too"),
    Setting("FASTNER_PUBLIC_BIND", "127.0.0.1:8080", str,
            "address the nginx front listens on (make serve-proxy)"),
    Setting("FASTNER_CLIENT_TIMEOUT", 10, int,
            "seconds a client may pause while sending its body (gunicorn answers 408) and, "
            "at the nginx front, its headers, or while reading the response", 1),
]
BY_NAME = {s.name: s for s in SETTINGS}


def setting(name: str, environ: Mapping[str, str] | None = None) -> Any:
    """The value of ``name`` from the environment, parsed and checked, else its default.
    A bad value raises ValueError naming the variable."""
    spec = BY_NAME[name]
    raw = (os.environ if environ is None else environ).get(name)
    if raw is None or raw == "":
        return spec.default
    if spec.kind is str:
        return raw
    try:
        value: Any = spec.kind(raw)
    except ValueError:
        kind = "an integer" if spec.kind is int else "a number"
        raise ValueError(f"{name} must be {kind}; got {raw!r}") from None
    if spec.minimum is not None and value < spec.minimum:
        raise ValueError(f"{name} must be at least {spec.minimum:g}; got {raw!r}")
    return value


def describe() -> str:
    """Plain-text list of every setting with its default (``fastner serve --help``)."""
    lines = []
    for s in SETTINGS:
        default = "unset" if s.default is None else f"{s.default:,}" if s.kind is int \
            else f"{s.default}"
        lines.append(f"  {s.name} (default {default})\n      {s.help}")
    return "\n".join(lines)


def markdown_table() -> str:
    """The settings table of docs/deployment.md."""
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for s in SETTINGS:
        default = "unset" if s.default is None else f"`{s.default}`"
        rows.append(f"| `{s.name}` | {default} | {s.help} |")
    return "\n".join(rows)
