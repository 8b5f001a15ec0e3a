"""DynamoDB adapters. Item shapes live in ``items``; the stores do the I/O.

The stores are synchronous (evreserve.awsjson). The gateway runs them on a thread pool
(``evreserve_gateway.offload``) so its event loop never blocks.
"""
