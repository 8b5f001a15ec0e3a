"""The operators' command line for the API (``evreserve-admin``, ``admin.cli``)."""
