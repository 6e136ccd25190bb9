"""``fedseg serve``: the HTTP API, the DIMSE SCP and (by default) one in-process worker."""

from __future__ import annotations

import argparse

from service.audit import redact_access_log
from service.config import get_settings
from service.errors import ConfigurationError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``serve`` subcommand."""
    parser = subparsers.add_parser(
        "serve",
        help="run the inference server (DICOMweb, DIMSE, REST, dashboard)",
        description="Run the API with the DIMSE SCP and an in-process worker.",
    )
    parser.add_argument("--host", help="address to bind (default: FEDSEG_API_HOST)")
    parser.add_argument("--port", type=int, help="HTTP port (default: FEDSEG_API_PORT)")
    parser.add_argument("--state-dir", help="database and storage folder")
    parser.add_argument("--tls-certfile", help="PEM certificate (chain); enables HTTPS")
    parser.add_argument("--tls-keyfile", help="PEM private key of the certificate")
    parser.add_argument(
        "--no-worker", action="store_true", help="API only; run `fedseg worker` separately"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted."""
    import uvicorn

    from service.api.main import create_app
    from service.server import Background, scp_service, segment_service

    settings = get_settings(
        api_host=args.host,
        api_port=args.port,
        state_dir=args.state_dir,
        tls_certfile=args.tls_certfile,
        tls_keyfile=args.tls_keyfile,
    )
    if (settings.tls_certfile is None) != (settings.tls_keyfile is None):
        raise ConfigurationError(
            "TLS needs both a certificate and its key (--tls-certfile/-keyfile)"
        )
    background: list[Background] = [scp_service]
    if not args.no_worker:
        background.insert(0, segment_service())
    app = create_app(settings, tuple(background))
    redact_access_log()  # uvicorn's access log would print query strings (PatientID=...)
    uvicorn.run(
        app,
        host=settings.api_host,
        port=settings.api_port,
        ssl_certfile=str(settings.tls_certfile) if settings.tls_certfile else None,
        ssl_keyfile=str(settings.tls_keyfile) if settings.tls_keyfile else None,
        log_level=settings.log_level.lower(),
    )
    return 0
