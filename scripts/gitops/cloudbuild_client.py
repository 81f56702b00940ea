"""A Cloud Build API client at a region's endpoint, shared by the commands that call Cloud Build.

Delivery triggers are regional (2nd-gen repositories need them in the connection's region), so
their builds live at `{region}-cloudbuild.googleapis.com`.
"""

from __future__ import annotations

from typing import Any


def endpoint(region: str) -> str:
    return f"{region}-cloudbuild.googleapis.com"


def regional_client(region: str, credentials: Any = None) -> Any:
    """A Cloud Build client bound to the region's endpoint (None: default credentials)."""
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)  # Python-version notices
    from google.api_core.client_options import ClientOptions
    from google.cloud.devtools import cloudbuild_v1

    return cloudbuild_v1.CloudBuildClient(
        credentials=credentials, client_options=ClientOptions(api_endpoint=endpoint(region)))
