"""The built web frontend (`attendance_api/frontend/dist`, made by `npm ci && npm run build` in
`attendance_api/frontend`) served on the API's own origin: hashed assets under `/assets`, and
`index.html` for every other page path so the browser-side router owns `/`, `/employee`,
`/admin`, `/reports`. Paths the API owns never fall through to the page."""

from __future__ import annotations

from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

FRONTEND_DIST = Path(__file__).resolve().parent / "frontend" / "dist"
API_PREFIXES = ("api/", "api", "broadcasting/", "media/", "openapi.json", "up")

NOT_BUILT = """<!doctype html><html lang="en"><meta charset="utf-8">
<title>attendance_api: frontend not built</title>
<body><h1>The web frontend is not built</h1>
<p>Run <code>bash scripts/run.sh</code>, or build it by hand:
<code>cd attendance_api/frontend &amp;&amp; npm ci &amp;&amp; npm run build</code>,
then reload. The API itself is at <a href="/api/health">/api</a>.</p></body></html>"""


def frontend_routes(dist: Path = FRONTEND_DIST) -> list[BaseRoute]:
    """Routes to append after the API's own: `/assets/*` and the page fallback."""
    index = dist / "index.html"

    async def page(request: Request) -> Response:
        path = request.path_params.get("path", "")
        if path.startswith(API_PREFIXES):
            raise HTTPException(404)
        if not index.is_file():
            return HTMLResponse(NOT_BUILT, status_code=503)
        # The page is tiny and names its hashed assets: always revalidate it, so a rebuild
        # is picked up on the next load.
        return FileResponse(index, headers={"Cache-Control": "no-cache"})

    routes: list[BaseRoute] = []
    if (dist / "assets").is_dir():
        routes.append(Mount("/assets", StaticFiles(directory=dist / "assets"), name="assets"))
    routes.append(Route("/{path:path}", page, methods=["GET", "HEAD"]))
    return routes
