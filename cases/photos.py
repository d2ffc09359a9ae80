"""Candidate photos: checked, re-encoded and stored under a random name.

Re-encoding with Pillow keeps only the pixels, so nothing hidden in an uploaded file
(a script after the image data, a crafted name or extension) is ever stored or
served; photos are served only through an authenticated view, never from /media/.
"""

from io import BytesIO
from uuid import uuid4

from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image, ImageOps, UnidentifiedImageError

from .validators import validate_photo

MAX_SIZE = (600, 800)  # ample for a 35 x 45 mm ID photo at 300 dpi, and for print
DIRECTORY = "photos"


def photo_store(upload) -> str:
    """Validate `upload` (type and size), store it as a JPEG, return the storage name."""
    try:
        validate_photo(upload)
        upload.seek(0)
        with Image.open(upload) as image:
            image = ImageOps.exif_transpose(image).convert("RGB")
            image.thumbnail(MAX_SIZE)
            buffer = BytesIO()
            image.save(buffer, "JPEG", quality=88, optimize=True)
    except ValidationError as exc:
        raise ValidationError({"photo": exc.messages}) from None
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError):
        raise ValidationError({"photo": ["照片文件已损坏，无法读取"]}) from None
    return default_storage.save(f"{DIRECTORY}/{uuid4().hex}.jpg", ContentFile(buffer.getvalue()))


def photo_discard(name: str) -> None:
    if name:
        default_storage.delete(name)
