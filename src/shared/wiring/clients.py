"""The one configuration every AWS client of roomcast is made with: the services' and the authorizer's."""

from __future__ import annotations

import platform

import botocore
from botocore.config import Config

# A fixed User-Agent: botocore otherwise rebuilds and sanitises its own, character by character, twice for
# every request, a sixth of a DynamoDB call's CPU (decision 0076).
USER_AGENT = f"roomcast botocore/{botocore.__version__} Python/{platform.python_version()}"
# Three attempts in all (botocore's `max_attempts` counts only the retries), with standard backoff.
CLIENT_CONFIG = Config(
    retries={"mode": "standard", "total_max_attempts": 3}, connect_timeout=2, read_timeout=5, user_agent=USER_AGENT
)
