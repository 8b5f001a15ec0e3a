"""The API Gateway Lambda REQUEST authorizer: ``Authorization: Bearer {api_key}``.

An unknown key raises ``Unauthorized`` by its exact name, which API Gateway answers
with 401 (gateway response UNAUTHORIZED, body from template.yaml). A known key gets
an Allow policy for every route of the stage, so the cached result (keyed by the
Authorization header) serves all routes, and a context the functions rebuild the
caller from. What a key may do per route is decided by the functions.
"""

from typing import Any

from aws_lambda_powertools import Logger

from evreserve.errors import DependencyUnavailable, Unauthorized
from evreserve_lambda import snapstart
from evreserve_lambda.wiring import services

logger = Logger(service="evreserve-authorizer")
snapstart.install(services)


# The event is read as the dict it is: Powertools' APIGatewayAuthorizerRequestEvent
# would import every one of its event data classes at cold start for two fields.
def _header(event: dict[str, Any], name: str) -> str | None:
    headers = event.get("headers") or {}
    for key, value in headers.items():
        if key.lower() == name:
            return str(value)
    return None


def stage_arn(method_arn: str) -> str:
    """``arn:aws:execute-api:{region}:{account}:{apiId}/{stage}/*/*`` from a method ARN."""
    prefix, _, path = method_arn.partition(":execute-api:")
    region_account_api, *rest = path.split("/")
    stage = rest[0] if rest else "*"
    return f"{prefix}:execute-api:{region_account_api}/{stage}/*/*"


# log_event=False whatever POWERTOOLS_LOGGER_LOG_EVENT says: the event is the API key.
@logger.inject_lambda_context(clear_state=True, log_event=False)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    try:
        principal = services().accounts.authenticate(_header(event, "authorization"))
    except Unauthorized:
        logger.info("rejected API key")
        # The exact message API Gateway turns into a 401 (any other failure is a 500).
        raise Exception("Unauthorized") from None
    except DependencyUnavailable:
        logger.exception("cannot check the API key")
        raise
    logger.info("accepted API key", extra={"key_id": principal.key_id})
    return {
        "principalId": principal.key_id,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": stage_arn(event["methodArn"])}
            ],
        },
        "context": principal.to_context(),
    }
