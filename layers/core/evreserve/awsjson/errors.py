"""What a call can raise: the service's error answer, or a failure on the way there."""

from __future__ import annotations

from typing import Any


class AwsError(Exception):
    """Anything a call can raise: the service's answer (``ClientError``) or the way there."""


class ClientError(AwsError):
    """The service answered with an error; ``response`` has botocore's shape."""

    def __init__(self, response: dict[str, Any], operation_name: str) -> None:
        error = response.get("Error", {})
        super().__init__(
            f"An error occurred ({error.get('Code', 'Unknown')}) when calling the {operation_name} operation: "
            f"{error.get('Message', '')}"
        )
        self.response = response
        self.operation_name = operation_name


class TransportError(AwsError):
    """The request did not get an answer: the service is unreachable or too slow."""


class ConnectTimeout(TransportError):
    pass


class ReadTimeout(TransportError):
    pass


class EndpointUnreachable(TransportError):
    pass


class ConnectionClosed(TransportError):
    pass


class NoCredentials(AwsError):
    pass
