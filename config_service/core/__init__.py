"""The server's rules, callable without HTTP: access, documents, schemas, tokens, instances, audit.

Every refusal is a `Refused(code, message, details)`; the HTTP edge decides what status it is.
"""
