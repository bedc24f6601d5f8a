"""The HTTP/1.1 protocol `tskcfg serve` runs: the only code that knows uvicorn's or httptools' internals."""
