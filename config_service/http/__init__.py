"""The HTTP edge: Starlette handlers, request parsing, the one read path, and codes turned into statuses."""
