"""The home of the compiled validators: the ``ocpp`` library's own JSON schemas, compiled by fastjsonschema.

The library validates every payload with jsonschema's pure-Python ``Draft4Validator``,
which was ~40% of the CPU a MeterValues frame costs (``docs/performance.md``): about
100 µs for a two-sample MeterValues, where the compiled validator takes ~5 µs. The
frames that dominate a charger's traffic are validated here instead, with the verdict
the library would give:

* the same schema files (the library's package data, found by ``library.schema_path``,
  so there is one copy of the schemas and a library upgrade brings its fixes here too);
* Draft 4 for every version, as the library validates 2.0.1's draft-06 files;
* formats unchecked and no defaults filled in, as the library does (a charger whose
  timestamps lack a zone is accepted by both);
* a violation mapped to the CALLERROR code the library raises for it.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

import fastjsonschema

from evreserve.models import OcppVersion

from .library import schema_path

#: Raised by a compiled validator for a payload that breaks its schema.
SchemaViolation = fastjsonschema.JsonSchemaValueException

_DRAFT4 = "http://json-schema.org/draft-04/schema#"

#: The library's mapping (``ocpp.messages._validate_payload``) of a failed keyword to a
#: CALLERROR code, in 2.0.1's spelling; anything else is a FormatViolation.
_CODES = {
    "type": "TypeConstraintViolation",
    "additionalProperties": "FormatViolation",
    "required": "ProtocolError",
    "maxLength": "TypeConstraintViolation",
}


@functools.cache
def request_validator(version: OcppVersion, action: str) -> Callable[[Any], Any]:
    """The compiled validator of ``action``'s request payload; raises ``SchemaViolation``."""
    # 2.0.1's files start with a byte order mark.
    schema = json.loads(schema_path(version, action).read_text(encoding="utf-8-sig"))
    schema["$schema"] = _DRAFT4
    return fastjsonschema.compile(schema, use_default=False, use_formats=False)


def violation_code(violation: SchemaViolation) -> str:
    """The CALLERROR code (2.0.1 spelling) the library gives the same violation."""
    return _CODES.get(violation.rule or "", "FormatViolation")
