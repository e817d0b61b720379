"""Uploaded images: content-checked storage (PNG, JPEG, GIF up to 2 MB) and serving
`/media/{id}`."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from ..context import Ctx, validation_error
from ..models import Media
from ..web import Req, find_one

IMAGE_SIGNATURES = {
    b"\x89PNG\r\n\x1a\n": "image/png",
    b"\xff\xd8\xff": "image/jpeg",
    b"GIF87a": "image/gif",
    b"GIF89a": "image/gif",
}
MAX_LOGO_BYTES = 2 * 1024 * 1024


def store_image(ctx: Ctx, req: Req, field_name: str) -> str:
    """Store the uploaded image `field_name` and return its absolute URL."""
    reader = getattr(req.body.get(field_name), "file", None)
    if reader is None:
        raise validation_error(field_name, f"The {field_name} must be an uploaded file.")
    data = reader.read(MAX_LOGO_BYTES + 1)
    if len(data) > MAX_LOGO_BYTES:
        raise validation_error(
            field_name, f"The {field_name} may not be greater than 2048 kilobytes."
        )
    kind = next((t for sig, t in IMAGE_SIGNATURES.items() if data.startswith(sig)), None)
    if kind is None:
        raise validation_error(
            field_name, f"The {field_name} must be a file of type: jpeg, png, jpg, gif."
        )
    media = Media(content_type=kind, data=data, created_at=ctx.now, created_by=ctx.actor.id)
    ctx.db.add(media)
    ctx.db.flush()
    return f"{req.base_url}/media/{media.id}"


def media_show(ctx: Ctx, req: Req) -> Any:
    media = find_one(ctx, Media, req.path_params["id"], "File")
    return Response(
        media.data,
        media_type=media.content_type,
        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "public, max-age=86400"},
    )
