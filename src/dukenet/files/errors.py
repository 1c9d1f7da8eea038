"""Errors of the files domain."""

from __future__ import annotations

from dukenet.errors import DukenetError


class PayloadTooLarge(DukenetError):
    """The upload is larger than ``max_upload_bytes`` (413)."""

    status_code = 413


class UnsupportedFileType(DukenetError):
    """The upload's content is not one of the allowed types (415)."""

    status_code = 415


class MalformedUpload(DukenetError):
    """The request is not a well-formed ``multipart/form-data`` body with a ``file`` part (422)."""

    status_code = 422
