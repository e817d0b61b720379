"""The built web frontend (`attendance_api/frontend/dist`, made by `npm ci && npm run build` in
`attendance_api/frontend`) served on the API's own origin: hashed assets under `/assets`, and
`index.html` for each page path of the browser-side router (`PAGES`). Only those paths are
added, so every other path keeps the API's own 404/405 answers."""

from __future__ import annotations

from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import BaseRoute, Route

FRONTEND_DIST = Path(__file__).resolve().parent / "frontend" / "dist"
PAGES = ("/", "/employee", "/admin", "/reports")  # the router in frontend/src/App.jsx

NOT_BUILT = """<!doctype html><html lang="en"><meta charset="utf-8">
<title>attendance_api: frontend not built</title>
<body><h1>The web frontend is not built</h1>
<p>Run <code>bash scripts/run.sh</code>, or build it by hand:
<code>cd attendance_api/frontend &amp;&amp; npm ci &amp;&amp; npm run build</code>,
then reload. The API itself is at <a href="/api/health">/api</a>.</p></body></html>"""


def frontend_routes(dist: Path = FRONTEND_DIST) -> list[BaseRoute]:
    """Routes to add beside the API's own: `/assets/*` and the pages."""
    index = dist / "index.html"

    async def page(_: Request) -> Response:
        if not index.is_file():
            return HTMLResponse(NOT_BUILT, status_code=503)
        # The page is tiny and names its hashed assets: always revalidate it, so a rebuild
        # is picked up on the next load.
        return FileResponse(index, headers={"Cache-Control": "no-cache"})

    assets = (dist / "assets").resolve()

    async def asset(request: Request) -> Response:
        # Looked up per request, so a build made while the server runs is served at once.
        path = (assets / request.path_params["name"]).resolve()
        if path.parent != assets or not path.is_file():
            raise HTTPException(404)
        # names carry a content hash: cache for a year
        return FileResponse(path, headers={"Cache-Control": "public, max-age=31536000, immutable"})

    routes: list[BaseRoute] = [Route("/assets/{name}", asset, methods=["GET", "HEAD"])]
    routes.extend(Route(path, page, methods=["GET", "HEAD"]) for path in PAGES)
    return routes
