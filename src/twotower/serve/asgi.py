"""The app object for other ASGI servers: `gunicorn -k uvicorn.workers.UvicornWorker
twotower.serve.asgi:app`. Settings come from the environment."""

from twotower.serve.app import create_app

app = create_app()
