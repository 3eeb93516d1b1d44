"""`papersift serve`: the site under uvicorn. With several workers each process builds its own app
(model, indexes, caches) from the settings in the environment, as uvicorn's factory mode does."""

from __future__ import annotations

import gc
import json
import logging
import os

from papersift.settings import load_settings

ENV = "PAPERSIFT_SERVE_SETTINGS"


def app_from_environment():
    """The app factory each uvicorn worker calls: settings come as JSON in an environment variable
    (secrets included, so it is never printed)."""
    from papersift.web.app import create_app

    values = json.loads(os.environ[ENV])
    app = create_app(load_settings(values))
    # What the worker loaded (modules, model, indexes) lives as long as the process: frozen out of the
    # collector's sight, a full collection walks only what requests made, so its pauses (which stall
    # every request in the worker) stay short. Paper pages, 2 workers, 50 clients (bench/web_load.py),
    # two runs each: p99 149 / 217 ms frozen, 227 / 274 ms not.
    gc.collect()
    gc.freeze()
    return app


def serve(settings) -> int:
    import uvicorn

    from papersift.store import open_store

    store = open_store(settings.resolved_database_url, migrate=True)  # migrate once, before the workers start
    papers = store.count_papers()
    store.close()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    values = {name: settings[name] for name in settings}
    os.environ[ENV] = json.dumps(values, default=str)
    host, port, workers = settings.host, int(settings.port), max(1, int(settings.workers))
    shown = settings.base_url or f"http://{'localhost' if host in ('127.0.0.1', '0.0.0.0') else host}:{port}"
    print(f"papersift: {papers:,} papers; serving on {shown} ({workers} worker{'s' if workers > 1 else ''}); "
          "Ctrl-C stops", flush=True)
    uvicorn.run("papersift.web.serve:app_from_environment", factory=True, host=host, port=port, workers=workers,
                log_level="warning", access_log=False, proxy_headers=False)
    return 0
