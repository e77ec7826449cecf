"""The per-request tensor limits, checked on a declared shape before anything is decoded.

The replicas' limits interceptor applies them to every unary request; a decoder
that reads the shapes anyway applies them itself, so a request's shapes are
walked once (see ``AsyncLimitsInterceptor``'s ``checked_by_handlers``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from modelplane.domain.errors import InvalidArgument


def check_shape_limits(name: str, shape: Sequence[int], max_rows: int, max_elements: int) -> None:
    """Refuses a shape over the limits (0 disables a limit).

    A negative dimension skips the element count: the decoder refuses it with
    its own message.
    """
    if not shape:
        return
    if max_rows and shape[0] > max_rows:
        raise InvalidArgument(
            f"inputs[{name}].shape[0]: {shape[0]} rows exceed the limit of "
            f"{max_rows} per request; split the batch"
        )
    if max_elements and min(shape) >= 0:
        elements = math.prod(shape)
        if elements > max_elements:
            raise InvalidArgument(
                f"inputs[{name}].shape: {elements} elements exceed the limit of "
                f"{max_elements} per tensor"
            )
