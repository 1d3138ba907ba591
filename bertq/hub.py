"""Quick questions to the Hugging Face Hub, with a short timeout and no heavy imports.

Offline, transformers retries for most of a minute before giving up; bertq asks first, so that a
submit on a machine without a network fails in seconds with what to do instead.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request

from bertq.errors import BertqError

HUB_TIMEOUT_SECONDS = 4.0


class HubUnreachable(BertqError):
    pass


class HubNotFound(BertqError):
    pass


def offline_mode() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}


def fetch_json(path: str) -> dict:
    """GET `{endpoint}/{path}` as JSON; HubNotFound for 401/403/404, HubUnreachable otherwise."""
    if offline_mode():
        raise HubUnreachable("HF_HUB_OFFLINE is set")
    url = f"{os.environ.get('HF_ENDPOINT', 'https://huggingface.co').rstrip('/')}/{path}"
    try:
        with urllib.request.urlopen(url, timeout=HUB_TIMEOUT_SECONDS) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        if error.code in (401, 403, 404):
            raise HubNotFound(f"HTTP {error.code}") from error
        raise HubUnreachable(f"HTTP {error.code}") from error
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise HubUnreachable(str(getattr(error, "reason", error))) from error
