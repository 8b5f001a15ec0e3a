"""The Lambda glue shared by the API functions: Powertools wiring, HTTP error mapping.

Functions import from here and from ``evreserve``; ``evreserve`` never imports this.
"""
