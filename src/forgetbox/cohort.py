"""A forget cohort: indices into a training set D of n samples, checked once per request.

:meth:`Cohort.check` is the one validation path of a cohort, whoever states it (the command
line's index file, ``forgetbox.scrub(forget_indices=...)``, a prepared state's request): each
fault has one message. The rest of forgetbox takes a :class:`Cohort` as already checked.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


class CohortError(ValueError):
    """A cohort that cannot be forgotten (the message names the fault)."""


STALE = "the cohort was checked against another prepared state or request"


def _empty() -> Tensor:
    return torch.zeros(0, dtype=torch.long)


@dataclass(frozen=True)
class Cohort:
    """The indices of one request, ``new`` ``(k,)`` int64 in the order given, in a training set
    of ``n`` samples from which ``earlier`` ``(m,)`` (earlier requests, in request order) are
    already forgotten. Build it with :meth:`check`."""

    new: Tensor
    n: int
    earlier: Tensor = field(default_factory=_empty)

    @classmethod
    def check(
        cls,
        indices,
        n: int,
        earlier=None,
        *,
        what: str = "forget indices",
        source: tuple[str, ...] | None = None,
    ) -> Cohort:
        """``indices`` as a checked cohort (a :class:`Cohort` is returned as it is).

        Refuses, with :class:`CohortError` and one message per fault: values that are not
        integers, an empty cohort, indices outside ``[0, n)``, duplicates, indices forgotten
        ``earlier`` and a cohort that would leave nothing of D. ``what`` names the indices in
        messages; ``source`` (one label per index, e.g. ``"line 3"``) says where each came from.
        """
        if isinstance(indices, Cohort):  # checked before: against this D and these requests?
            if not indices.matches(n, earlier):
                raise CohortError(STALE)
            return indices
        idx = indices if isinstance(indices, Tensor) else torch.as_tensor(indices)
        if idx.numel() == 0:
            raise CohortError(f"{what}: the cohort is empty, nothing to forget")
        if idx.is_floating_point() or idx.is_complex() or idx.dtype == torch.bool:
            raise CohortError(f"{what} must be integers; got {idx.dtype}")
        idx = idx.detach().reshape(-1).to("cpu", torch.long)
        before = _empty() if earlier is None else torch.as_tensor(earlier, dtype=torch.long)
        before = before.reshape(-1).cpu()
        _check_range(idx, n, what, source)
        _check_unique(idx, what, source)
        again = idx[torch.isin(idx, before)]
        if len(again):
            raise CohortError(f"{what} {again[:5].tolist()} were already forgotten")
        if len(idx) + len(before) >= n:
            raise CohortError(f"{what}: the cohorts would cover the whole training set of {n}")
        return cls(idx, n, before)

    def matches(self, n: int, earlier=None) -> bool:
        """Whether this cohort was checked against a set of ``n`` samples and, when given, the
        requests ``earlier`` (a cohort checked against an earlier point would bring their
        samples back into D_r)."""
        if self.n != n:
            return False
        if earlier is None:
            return True
        before = torch.as_tensor(earlier, dtype=torch.long).reshape(-1).cpu()
        return torch.equal(self.earlier.cpu(), before)

    @property
    def all(self) -> Tensor:
        """Every index forgotten after this request: ``earlier`` then ``new``."""
        return torch.cat([self.earlier, self.new])

    def sorted(self) -> Cohort:
        """The same cohort with ``new`` in index order."""
        return Cohort(self.new.sort().values, self.n, self.earlier)

    def retained(self) -> Tensor:
        """Boolean mask ``(n,)`` of the samples that stay (D_r after this request)."""
        keep = torch.ones(self.n, dtype=torch.bool)
        keep[self.all] = False
        return keep

    def __len__(self) -> int:
        return len(self.new)


def _check_range(idx: Tensor, n: int, what: str, source) -> None:
    bad = ((idx < 0) | (idx >= n)).nonzero().squeeze(1)
    if not len(bad):
        return
    if source is not None:
        k = int(bad[0])
        raise CohortError(f"{what}, {source[k]}: index {int(idx[k])} lies outside [0, {n})")
    raise CohortError(f"{what} out of range [0, {n}): {idx[bad][:5].tolist()}")


def _check_unique(idx: Tensor, what: str, source) -> None:
    order = torch.argsort(idx, stable=True)
    ranked = idx[order]
    repeat = (ranked[1:] == ranked[:-1]).nonzero().squeeze(1)
    if not len(repeat):
        return
    if source is not None:
        # the earliest position that repeats an index given before it
        second = order[repeat + 1]
        k = int(second.min())
        first = int(order[(ranked == idx[k]).nonzero()[0, 0]])
        raise CohortError(f"{what}, {source[k]}: index {int(idx[k])} repeats {source[first]}'s")
    raise CohortError(f"{what} contain duplicates: {ranked[repeat][:5].unique().tolist()}")
