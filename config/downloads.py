"""Protected file downloads handed to nginx (X-Accel-Redirect).

Certificate PDFs and candidate photos are personal data: never under a public URL, each
download passes the view's permission checks first. With PROTECTED_MEDIA_PREFIX set
(e.g. "/protected/", an `internal` nginx location aliasing MEDIA_ROOT, see
deploy/nginx/joint-evaluation.conf) the view answers with an empty body and the
header, and nginx sends the bytes, so no gunicorn worker is tied up streaming a file
to a slow client. Without it (development, tests) the caller streams the file itself.
"""

import posixpath
from urllib.parse import quote

from django.conf import settings
from django.http import HttpResponse
from django.utils.http import content_disposition_header


def accel_redirect_response(
    name: str, *, content_type: str, filename: str | None = None, as_attachment: bool = False
) -> HttpResponse | None:
    """An empty response telling nginx to send the stored file `name` (a name of the
    default file storage, relative to MEDIA_ROOT), with the Content-Type and
    Content-Disposition a FileResponse of the same file would carry; None when no
    prefix is configured."""
    prefix = settings.PROTECTED_MEDIA_PREFIX
    if not prefix:
        return None
    response = HttpResponse(content_type=content_type)
    # nginx unescapes the redirect URI: quoting keeps a stored name with spaces or
    # non-ASCII characters one path. Names never start with "/" or contain "..":
    # the storage refuses such names (SuspiciousFileOperation).
    response["X-Accel-Redirect"] = prefix.rstrip("/") + "/" + quote(name.lstrip("/"), safe="/")
    disposition = content_disposition_header(as_attachment, filename or posixpath.basename(name))
    if disposition:
        response["Content-Disposition"] = disposition
    return response
