"""Errors of the fine-tuning pipeline."""

from __future__ import annotations

from dukenet.errors import DukenetError


class FinetuneError(DukenetError):
    """A fine-tune cannot run or failed: the base model cannot be loaded, the dataset is too
    small or malformed, the device ran out of memory. The message names the problem; nothing
    is registered and the champion is untouched."""

    status_code = 400
