"""``personaagent serve``: the HTTP API (FastAPI + uvicorn) over the Python API.

Needs the ``server`` extra (``pip install 'personaagent[server]'``; scripts/setup.sh installs it).
"""

from __future__ import annotations

import ipaddress
import logging

from personaagent.errors import ConfigError
from personaagent.server.app import ApiError, create_app
from personaagent.workspace import Workspace

__all__ = ["create_app", "serve", "ApiError", "is_loopback"]

logger = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(workspace: Workspace, *, host: str = "127.0.0.1", port: int = 8000, no_auth: bool = False) -> None:
    """Serve the HTTP API until interrupted (one process: the embedded store allows one).

    Args:
        workspace: what to serve; it is closed when the server stops.
        host: address to listen on. Defaults to loopback.
        port: TCP port. Defaults to 8000.
        no_auth: serve without API keys; allowed on a loopback host only. Defaults to False.

    Raises:
        ConfigError: no API key is set (and ``no_auth`` is not given), or ``no_auth`` is asked
            for a non-loopback host, or together with API keys.
    """
    import uvicorn  # the server extra; the library and the CLI's other commands work without it

    keys = workspace.settings.api_key_values
    if no_auth:
        if not is_loopback(host):
            raise ConfigError(f"--no-auth is allowed on a loopback host only (127.0.0.1, ::1, localhost), not {host!r}; "
                              "set PERSONAAGENT_API_KEYS instead")
        if keys:
            raise ConfigError("--no-auth was given but API keys are set (PERSONAAGENT_API_KEYS); drop one of them")
        logger.warning("serving WITHOUT authentication on %s:%d", host, port)
    elif not keys:
        raise ConfigError("no API key: set PERSONAAGENT_API_KEYS (comma-separated keys clients send as "
                          "'Authorization: Bearer <key>'), or pass --no-auth to serve on loopback without one")
    app = create_app(workspace, api_keys=None if no_auth else keys, close_workspace=True)
    uvicorn.run(app, host=host, port=port, log_level="info", workers=1)
