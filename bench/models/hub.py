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


def hub_host() -> str:
    from huggingface_hub import constants

    return urllib.parse.urlparse(os.environ.get("HF_ENDPOINT", constants.ENDPOINT)).hostname or "huggingface.co"


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
    host = hub_host()
    try:
        socket.create_connection((host, 443), timeout=timeout_s).close()
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
