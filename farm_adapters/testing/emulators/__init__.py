"""Emulators of the farms farm-adapters talks to, for tests and for TDs developing
without a farm. They need the ``emulators`` extra (FastAPI, uvicorn)."""
