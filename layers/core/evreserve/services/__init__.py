"""Use cases of the public API, transport-free.

Each service takes the stores and the command channel it needs (built once by
``bootstrap.build_services``) and a ``Principal`` saying who calls. Scope is checked
here, once, for every entrypoint: anything outside the caller's scope is ``NotFound``,
indistinguishable from a resource that does not exist.
"""
