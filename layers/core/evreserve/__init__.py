"""The shared core of the EV-charging reservation service.

Imported by the Lambda functions (as a layer) and by the gateway (pip-installed).
It never imports ``aws_lambda_powertools``, ``websockets`` or ``ocpp``: the domain,
its errors, the storage adapters and the command-channel contract stay transport-free.
"""
