"""What the hub and the agent share: message shapes and status names.

This package imports neither ``hub`` nor ``agent``; both import it. Field
names and status strings are those of the reference documents.
"""

from protocol.models import (
    API_PREFIX,
    PROTOCOL_VERSION,
    CheckinRequest,
    CheckinResponse,
    ClientStatus,
    ClientType,
    EnrollRequest,
    EnrollResponse,
    ErrorBody,
    ErrorDetail,
    Metrics,
    NetRate,
    TokenRequest,
    TokenResponse,
)

__all__ = [
    "API_PREFIX",
    "PROTOCOL_VERSION",
    "CheckinRequest",
    "CheckinResponse",
    "ClientStatus",
    "ClientType",
    "EnrollRequest",
    "EnrollResponse",
    "ErrorBody",
    "ErrorDetail",
    "Metrics",
    "NetRate",
    "TokenRequest",
    "TokenResponse",
]
