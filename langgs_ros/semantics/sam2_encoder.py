"""One SAM 2 image-encoder pass per keyframe, shared by the mask generator and the association.

The image predictor (masks) and the video predictor (propagation) each call the model's
``forward_image`` themselves. :func:`recording_encoder` keeps what the image predictor's pass
returned; :func:`replaying_encoder` answers the video predictor's calls with kept outputs instead
of encoding again. Both swap ``forward_image`` on the model instance only while active and put back
whatever was there before (nesting is safe).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["recording_encoder", "replaying_encoder"]


@contextlib.contextmanager
def _forward_image(model: Any, make: Callable[[Callable[[Any], Any]], Callable[[Any], Any]]) -> Iterator[None]:
    """``model.forward_image`` is ``make(current forward_image)`` while active."""
    shadowed = vars(model).get("forward_image")  # an instance attribute (another swap), else the class's method
    model.forward_image = make(model.forward_image)
    try:
        yield
    finally:
        if shadowed is None:
            del model.forward_image
        else:
            model.forward_image = shadowed


@contextlib.contextmanager
def recording_encoder(model: Any, outputs: list[Any]) -> Iterator[None]:
    """While active, every encoder output of ``model`` is also appended to ``outputs``."""
    def make(encode: Callable[[Any], Any]) -> Callable[[Any], Any]:
        def record(image: Any) -> Any:
            outputs.append(encode(image))
            return outputs[-1]
        return record

    with _forward_image(model, make):
        yield


@contextlib.contextmanager
def replaying_encoder(model: Any, outputs: list[Any]) -> Iterator[None]:
    """While active, ``model``'s encoder calls get ``outputs`` in order (as float32: they may come
    from an autocast pass), then run the encoder once they are used up."""
    queue = list(outputs)

    def make(encode: Callable[[Any], Any]) -> Callable[[Any], Any]:
        def replay(image: Any) -> Any:
            return _float32(queue.pop(0)) if queue else encode(image)
        return replay

    with _forward_image(model, make):
        yield


def _float32(tree: Any) -> Any:
    """The encoder output with every tensor in float32."""
    if isinstance(tree, dict):
        return {k: _float32(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_float32(v) for v in tree)
    return tree.float() if hasattr(tree, "float") else tree
