"""Query parameters every list endpoint shares (the API family's cursor pagination)."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.openapi.params import Query

#: Page size: at most 500 items, as the conventions allow (default 50 at each route).
Limit = Annotated[int, Query(ge=1, le=500)]
#: The ``nextPageCursor`` of the previous page, passed back with the other parameters unchanged.
Cursor = Annotated[str | None, Query(alias="nextPageCursor", max_length=1000)]
