"""The HTTP handlers, one module per area; `config_service.app` lists them all in its route table."""
