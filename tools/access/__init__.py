"""The sample access-request domain: employees, internal systems, grants and the requests
employees file to get or lose access. Its SQLite database, sample requests and tools."""

from tools.access.requests import SampleRequest, load_sample_requests
from tools.access.seed import build_access_db, open_access_db
from tools.access.tools import access_registry

__all__ = [
    "SampleRequest",
    "access_registry",
    "build_access_db",
    "load_sample_requests",
    "open_access_db",
]
