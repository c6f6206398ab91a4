"""An Argilla client for the configured server, workspace and API key, with errors a user can act on.

The API key is read from the environment variable that `annotation.argilla.api_key_env`
names; it is never stored in the workspace and never put into a message.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from annotation.config import ArgillaConfig
from rlhf.core.errors import UserError


def sdk() -> Any:
    """The `argilla` module, imported on first use (it is an optional extra)."""
    try:
        import argilla
    except ImportError:
        raise UserError(
            "the Argilla front end needs the argilla SDK: pip install 'rlhf-workbench[argilla]'"
        ) from None
    return argilla


def api_key(cfg: ArgillaConfig) -> str:
    key = os.environ.get(cfg.api_key_env, "").strip()
    if not key:
        raise UserError(f"set the environment variable {cfg.api_key_env} to an Argilla owner or admin API key")
    return key


def where(cfg: ArgillaConfig) -> str:
    """The server's URL as messages show it: without the user name and password it may carry
    (`https://user:password@host`, for a proxy in front of Argilla)."""
    parts = urlsplit(cfg.url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2])).rstrip("/")


@contextmanager
def talking_to(cfg: ArgillaConfig) -> Iterator[None]:
    """Turn the SDK's and httpx's failures into one-line UserErrors naming the server (never the key)."""
    import httpx

    sdk()
    from argilla._exceptions import ArgillaAPIError, ArgillaCredentialsError, ArgillaError, UnauthorizedError

    url = where(cfg)
    try:
        yield
    except (ArgillaCredentialsError, UnauthorizedError):
        raise UserError(f"Argilla at {url} rejected the API key in {cfg.api_key_env}") from None
    except httpx.TransportError as err:
        reason = type(err).__name__ if not str(err) else str(err).splitlines()[0]
        raise UserError(f"Argilla at {url} is unreachable: {reason}") from None
    except ArgillaAPIError as err:
        detail = str(err).splitlines()[0][:300]
        raise UserError(f"Argilla at {url} refused a request (HTTP {err.status_code}): {detail}") from None
    except ArgillaError as err:
        raise UserError(f"Argilla at {url}: {str(err).splitlines()[0][:300]}") from None
    except json.JSONDecodeError:
        # Something answers at the URL, but not Argilla's API (another service, a proxy's login page).
        raise UserError(f"Argilla at {url} answered with something that is not JSON: is it an Argilla server?") from None


def connect(cfg: ArgillaConfig) -> Any:
    """A logged-in `argilla.Argilla` client (checks the server and the key at once)."""
    key = api_key(cfg)
    rg = sdk()
    with talking_to(cfg):
        # retries=0: a refused connection should fail now, not after the SDK's five retries.
        # The timeout goes to httpx as it is: int() made 0.5 s a timeout of 0 (every request failed).
        return rg.Argilla(api_url=cfg.url, api_key=key, timeout=cfg.timeout_seconds, retries=0)


def workspace(client: Any, cfg: ArgillaConfig) -> Any:
    """The configured workspace; it must exist (datasets never go to a workspace made by accident)."""
    with talking_to(cfg):
        found = client.workspaces(name=cfg.workspace)
    if found is None:
        raise UserError(
            f"Argilla workspace {cfg.workspace!r} does not exist at {where(cfg)} "
            "(create it in Argilla, or set annotation.argilla.workspace)"
        )
    return found
