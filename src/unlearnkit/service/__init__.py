"""``unlearnkit serve``: an OpenAI-compatible gateway that enforces forget requests live.

The model, the guard stack and the target registry sit behind the OpenAI HTTP API;
targets are added and removed at run time through the admin routes, stored in
SQLite with an append-only audit log. FastAPI and uvicorn are imported only when a
server is built.
"""

from unlearnkit.service.settings import ServeSettings

__all__ = ["ServeSettings", "create_app", "run_server", "serve", "start_background_server"]


def __getattr__(name):
    if name == "create_app":
        from unlearnkit.service.app import create_app

        return create_app
    if name in ("run_server", "serve", "start_background_server", "ServerHandle"):
        from unlearnkit.service import server

        return getattr(server, name)
    raise AttributeError(name)
