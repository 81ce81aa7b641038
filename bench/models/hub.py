"""Models by Hugging Face hub name: served from the local cache when they are there, fetched when the hub
answers, and one clear error at once when neither (a machine without the hub should not wait a minute of
retries to learn it)."""

from __future__ import annotations

import os
import socket
import urllib.parse

from bench.common.errors import UserError


class ModelUnavailableError(UserError):
    """A model named by hub id that this machine cannot get: the message says why and what to do instead."""


PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


def hub_address() -> tuple[str, int]:
    """The hub's host and port ($HF_ENDPOINT, else the library's endpoint)."""
    from huggingface_hub import constants

    url = urllib.parse.urlparse(os.environ.get("HF_ENDPOINT", constants.ENDPOINT))
    return url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)


def is_cached(name: str) -> bool:
    """Whether the hub checkpoint `name` is in the local Hugging Face cache (its config.json at least)."""
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(name, "config.json"), str)


def hub_unavailable(name: str, timeout_s: float = 3.0) -> str | None:
    """Why hub checkpoint `name` cannot be had here (a sentence), or None when it is cached or the hub answers."""
    from huggingface_hub import constants

    if is_cached(name):
        return None
    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set and it is not in the local Hugging Face cache"
    if any(os.environ.get(name) for name in PROXY_VARIABLES):
        return None  # the hub is reached through a proxy: a direct probe would say nothing; the download will tell
    host, port = hub_address()
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as error:  # without this probe, from_pretrained retries for about a minute before failing
        return f"the Hugging Face hub ({host}) is unreachable from this machine ({error})"
    return None


def require_hub_model(name: str, role: str = "model") -> None:
    """Raise ModelUnavailableError, naming the model and the ways out, when `name` cannot be loaded here."""
    reason = hub_unavailable(name)
    if reason is not None:
        from huggingface_hub import constants

        raise ModelUnavailableError(
            f"cannot load {role} {name!r}: {reason}. Give a local checkpoint directory instead (a path with its "
            f"config.json), or fetch it where the hub is reachable and copy the Hugging Face cache here "
            f"(HF_HOME, now {constants.HF_HOME}), then run with HF_HUB_OFFLINE=1")
