"""A small client for the AWS JSON protocol, which DynamoDB, SQS and EventBridge speak.

Why not botocore: per request it runs its event hooks, walks every parameter, serialises
through the service model, signs through a chain of handlers, parses the answer through the
model again and sends it by urllib3. Here that was ~1.7 ms of CPU for a GetItem, two
thirds of the functions' and of the gateway's CPU per reservation (docs/performance.md),
and its import ~180 ms of a function's cold start. These three services take one JSON
document POSTed to ``/`` with the operation in ``X-Amz-Target``, signed with SigV4, and
the document is the botocore client's keyword arguments unchanged (``TableName``,
``Key``...). So one client, calling ``client.get_item(TableName=..., Key=...)`` exactly as
the code calls botocore's, carries all our calls for ~0.35 ms of CPU each.

What it keeps of botocore's behaviour: the endpoints (``AWS_ENDPOINT_URL_<SERVICE>``,
``AWS_ENDPOINT_URL``, else the regional one), credentials from the environment (as Lambda
sets them) else botocore's whole provider chain (ECS container credentials, profiles;
imported only then, refreshed as botocore refreshes them), the "standard" retry mode
(which errors, ``random() * 2**(attempt-1)`` seconds capped at 20, the retry quota),
DynamoDB's CRC32 check, SQS's query-compatible error codes
(``AWS.SimpleQueueService.NonExistentQueue``), blobs as bytes, and the shape of
``ClientError.response``. What it leaves out: parameter validation before sending (the
service answers ``ValidationException``) and proxies. Tracing sees every call through
``observe`` (evreserve_lambda.tracing records each as X-Ray's AWS subsegment).
``AWS_CLIENT=botocore`` builds botocore's clients instead (evreserve.aws).
"""

from .auth import Credentials, EnvironmentCredentials, Signer
from .client import (
    DYNAMODB,
    EVENTBRIDGE,
    SQS,
    THROTTLING_CODES,
    JsonClient,
    RetryQuota,
    Service,
    endpoint_url,
    observe,
    operation_name,
)
from .errors import (
    AwsError,
    ClientError,
    ConnectionClosed,
    ConnectTimeout,
    EndpointUnreachable,
    NoCredentials,
    ReadTimeout,
    TransportError,
)

__all__ = [
    "DYNAMODB",
    "EVENTBRIDGE",
    "SQS",
    "THROTTLING_CODES",
    "AwsError",
    "ClientError",
    "ConnectTimeout",
    "ConnectionClosed",
    "Credentials",
    "EndpointUnreachable",
    "EnvironmentCredentials",
    "JsonClient",
    "NoCredentials",
    "ReadTimeout",
    "RetryQuota",
    "Service",
    "Signer",
    "TransportError",
    "endpoint_url",
    "observe",
    "operation_name",
]
