"""The HTTP service: `create_app(settings)` builds it; `twotower.serve.asgi:app` is the
importable app for ASGI servers."""

from twotower.serve.app import create_app

__all__ = ["create_app"]
