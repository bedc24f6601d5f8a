"""The config server, and the TSK language it shares with the client.

Importing this package imports nothing outside the standard library: the
server modules (Starlette, uvicorn, jsonschema) load only when used.
"""

__version__ = "0.1.0"
