"""Image stamps as recorders get them wrong: zero, repeated, out of order, or all the same.

A pose is looked up at an image's stamp, so an image stamped like the one before it gets that
image's pose: it is skipped. Zero and out-of-order stamps are counted and reported; a recording
whose every image has one stamp is an error (nothing in it can be posed apart).
"""

from __future__ import annotations

from langgs_ros.errors import InputError

__all__ = ["StampCheck"]


class StampCheck:
    """Feed image stamps (ns) in recording order; reports what is wrong with them."""

    def __init__(self) -> None:
        self.count = self.zero = self.repeated = self.backwards = 0
        self._first: int | None = None
        self._previous: int | None = None
        self._all_equal = True

    def add(self, stamp_ns: int) -> str | None:
        """Note one stamp; returns why the image is skipped (it repeats the previous stamp), or None."""
        self.count += 1
        self.zero += stamp_ns == 0
        if self._first is None:
            self._first = stamp_ns
        self._all_equal &= stamp_ns == self._first
        previous, self._previous = self._previous, stamp_ns
        if previous is None:
            return None
        if stamp_ns == previous:
            self.repeated += 1
            return "image stamp repeats the previous image's (it would get the same pose)"
        if stamp_ns < previous:
            self.backwards += 1
        return None

    def notes(self) -> list[str]:
        """One line per kind of wrong stamp seen."""
        out = []
        if self.zero:
            out.append(f"{self.zero} of {self.count} images are stamped 0 (a driver without a clock?)")
        if self.repeated:
            out.append(f"{self.repeated} images repeat the previous image's stamp (skipped)")
        if self.backwards:
            out.append(f"{self.backwards} images are stamped earlier than the image before them (out of order)")
        return out

    def raise_if_all_equal(self) -> None:
        """Raise InputError if more than one image was seen and all have one stamp."""
        if self.count > 1 and self._all_equal:
            raise InputError(f"all {self.count} images have the stamp {self._first / 1e9:.9f} s: none can be posed apart "
                             "from the others (poses are looked up at the stamp); the recording's stamps are broken")
