"""The Turbo objective: in-modal and cross-modal InfoNCE over two dropout views.

Each modality ``m`` arrives as two views ``(m1, m2)`` of the same batch, drawn
by two forward passes that differ only in their dropout masks. With every view
L2-normalised and ``s(x, y) = x . y / temperature``::

    l(x -> y)   = mean_i -log( exp s(x_i, y_i) / sum_j exp s(x_i, y_j) )
    t(x, y)     = (l(x -> y) + l(y -> x)) / 2     (symmetric)
                = l(x -> y)                       (one-directional)
    in-modal terms:    t(m1, m2) for every modality m
    cross-modal terms: t(m1, n1), t(m1, n2), t(m2, n1), t(m2, n2) for every
                       pair of modalities (m, n), m before n
    in_modal, cross_modal = the mean (``reduction="mean"``) or the sum
                            (``reduction="sum"``) of their terms
    loss        = in_modal_weight * in_modal + cross_modal_weight * cross_modal

With audio and text, ``reduction="sum"`` and unit weights, ``loss`` is the
six-term sum of the Turbo paper (arXiv 2409.09282):
``l_in(a1, a2) + l_in(t1, t2) + l_x(a1, t1) + l_x(a1, t2) + l_x(a2, t1)
+ l_x(a2, t2)``. ``symmetric="cross_modal"`` makes the in-modal terms
one-directional as in SimCSE and the cross-modal ones two-directional as in
CLIP.

Negatives ``j`` can be left out of a row's denominator: those sharing row
``i``'s label (``label_aware``) and those sharing its group (``groups``, e.g.
the same transcript), since identical or same-class inputs are not negatives.
With ``label_positives`` the same-label columns are positives instead, as in
supervised contrastive learning (Khosla et al., 2020): ``l(x -> y)`` of row
``i`` is then the mean over its positives ``p`` of
``-log( exp s(x_i, y_p) / sum_j exp s(x_i, y_j) )``.

Under DDP (``gather_across_ranks``, on by default there) every process
gathers all processes' views, labels and groups, and computes the loss of
its own rows against all columns (OpenCLIP's ``local_loss`` with a
differentiable ``all_gather``). DDP's gradient averaging then gives exactly
the gradients of one process holding the whole global batch; gathering
without restricting the rows would multiply them by the world size.
Processes may hold batches of different sizes (e.g. batches sized by
duration): the sizes are gathered first, and each process's mean is
weighted by its share of the rows, so that the average over processes is
the mean over the global batch.

Authors
 * speechbrain-turbo contributors
"""

import functools
import itertools
import math

import torch
import torch.nn.functional as F


class TurboLoss(torch.nn.Module):
    """In-modal and cross-modal contrastive loss over two views per modality.

    Arguments
    ---------
    temperature : float
        Softmax temperature of the similarities (logits are ``cos / T``).
    in_modal_weight : float
        Weight of the in-modal term (audio-audio, text-text).
    cross_modal_weight : float
        Weight of the cross-modal term (audio-text).
    label_aware : bool
        If True and labels are given, same-label items are not negatives.
    label_positives : bool
        If True and labels are given, same-label items are positives
        (supervised contrastive); ``label_aware`` is then moot.
    learn_temperature : bool
        If True, the inverse temperature is a parameter initialised to
        ``1 / temperature`` (stored as its log). As in CLIP, its value is
        clamped at 100 after each optimizer step
        (:meth:`clamp_inverse_temperature_`, which ``TurboBrain`` calls), not
        in the forward pass, where the clamp would zero its gradient for good.
    reduction : str
        ``"mean"``: ``in_modal`` and ``cross_modal`` are the means of their
        terms (1 in-modal term per modality, 4 cross-modal terms per pair of
        modalities); ``"sum"``: their sums, as in the paper.
    symmetric : str
        ``"all"``: every term averages both directions (``l(x -> y)`` and
        ``l(y -> x)``); ``"none"``: one direction (first view or first
        modality as the anchor); ``"cross_modal"``: in-modal terms
        one-directional, cross-modal terms both ways.
    gather_across_ranks : bool or None
        Use every process's rows as negatives under ``torch.distributed``.
        None (default): whenever a process group of several processes is
        initialised. Batch sizes may differ between processes.

    Example
    -------
    >>> loss_fn = TurboLoss(temperature=0.1)
    >>> a1, a2, t1, t2 = torch.randn(4, 8, 16).unbind(0)
    >>> out = loss_fn({"audio": (a1, a2), "text": (t1, t2)})
    >>> sorted(out)[:4]
    ['cross_modal', 'in_modal', 'in_modal_audio', 'in_modal_text']
    >>> out["loss"].shape
    torch.Size([])

    The paper's objective: the sum of its six terms.

    >>> paper = TurboLoss(reduction="sum", symmetric="cross_modal")
    >>> out = paper({"audio": (a1, a2), "text": (t1, t2)})
    >>> torch.allclose(out["loss"], out["in_modal"] + out["cross_modal"])
    True
    """

    MAX_INVERSE_TEMPERATURE = 100.0
    REDUCTIONS = ("mean", "sum")
    SYMMETRIC = ("all", "cross_modal", "none")

    def __init__(
        self,
        temperature=0.05,
        in_modal_weight=1.0,
        cross_modal_weight=1.0,
        label_aware=False,
        learn_temperature=False,
        gather_across_ranks=None,
        label_positives=False,
        reduction="mean",
        symmetric="all",
    ):
        super().__init__()
        if reduction not in self.REDUCTIONS:
            raise ValueError(
                "TurboLoss reduction must be 'mean' or 'sum', "
                f"got {reduction!r}"
            )
        if symmetric not in self.SYMMETRIC:
            raise ValueError(
                "TurboLoss symmetric must be 'all', 'cross_modal' or 'none' "
                f"(every term both ways, the cross-modal ones, or none), got "
                f"{symmetric!r}"
            )
        self.reduction = reduction
        self.symmetric = symmetric
        self.gather_across_ranks = gather_across_ranks
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.in_modal_weight = in_modal_weight
        self.cross_modal_weight = cross_modal_weight
        self.label_aware = label_aware
        self.label_positives = label_positives
        self.learn_temperature = learn_temperature
        log_scale = torch.tensor(math.log(1.0 / temperature))
        if learn_temperature:
            self.log_inverse_temperature = torch.nn.Parameter(log_scale)
        else:
            self.register_buffer("log_inverse_temperature", log_scale)

    def inverse_temperature(self):
        """Returns the current ``1 / temperature`` as an fp32 0-dim tensor.

        Returns
        -------
        torch.Tensor
            The scale of the logits.

        Example
        -------
        >>> TurboLoss(temperature=0.5).inverse_temperature()
        tensor(2.)
        """
        return self.log_inverse_temperature.float().exp()

    @torch.no_grad()
    def clamp_inverse_temperature_(self):
        """Clamps a learned ``1 / temperature`` at 100, in place.

        Call it after each optimizer step (CLIP's practice): the parameter
        then keeps its gradient and can come back below the bound.

        Returns
        -------
        None

        Example
        -------
        >>> loss_fn = TurboLoss(temperature=0.001, learn_temperature=True)
        >>> loss_fn.clamp_inverse_temperature_()
        >>> round(float(loss_fn.inverse_temperature()), 3)
        100.0
        """
        if self.learn_temperature:
            self.log_inverse_temperature.clamp_(
                max=math.log(self.MAX_INVERSE_TEMPERATURE)
            )

    def forward(self, views, labels=None, groups=None):
        """Computes the Turbo objective.

        Arguments
        ---------
        views : dict
            Modality name -> ``(view1, view2)``, each ``[B, D]`` (any scale).
        labels : torch.Tensor, optional
            ``[B]`` class ids; used only when ``label_aware`` is True.
        groups : torch.Tensor, optional
            ``[B]`` integer ids; rows of the same group are not negatives.

        Returns
        -------
        dict
            0-dim tensors: ``loss``, ``in_modal``, ``cross_modal``, and,
            detached for logging, ``inverse_temperature`` and each
            modality's in-modal term ``in_modal_<name>``.

        Example
        -------
        >>> loss_fn = TurboLoss(label_aware=True)
        >>> x1, x2 = torch.randn(2, 4, 3).unbind(0)
        >>> labels = torch.tensor([0, 0, 1, 1])
        >>> out = loss_fn({"audio": (x1, x2)}, labels=labels)
        >>> float(out["cross_modal"])
        0.0
        """
        if not views:
            raise ValueError("TurboLoss needs at least one modality's views")
        scale = self.inverse_temperature()
        # fp32 logits even under autocast: cos / T with T ~ 0.05 overflows
        # bf16/fp16 resolution and the softmax becomes coarse.
        device_type = next(iter(views.values()))[0].device.type
        with torch.autocast(device_type=device_type, enabled=False):
            unit = {
                name: [F.normalize(v.float(), dim=-1) for v in pair]
                for name, pair in views.items()
            }
            first = next(iter(unit.values()))[0]
            rows = first.shape[0]
            if not (self.label_aware or self.label_positives):
                labels = None
            columns, offset, share, labels, groups = self._columns(
                unit, rows, labels, groups, first.device
            )
            targets = self._targets(rows, offset, labels, groups, first.device)
            term = functools.partial(self._term, unit, columns, scale, targets)
            in_terms = [
                term((m, 0), (m, 1), both_ways=self.symmetric == "all")
                for m in unit
            ]
            cross_terms = [
                term((m, i), (n, j), both_ways=self.symmetric != "none")
                for m, n in itertools.combinations(unit, 2)
                for i in (0, 1)
                for j in (0, 1)
            ]
            in_modal = share * self._reduce(in_terms)
            # A single modality has no cross-modal term.
            cross_modal = (
                share * self._reduce(cross_terms)
                if cross_terms
                else in_modal.new_zeros(())
            )
        return {
            "loss": self.in_modal_weight * in_modal
            + self.cross_modal_weight * cross_modal,
            "in_modal": in_modal,
            "cross_modal": cross_modal,
            "inverse_temperature": scale.detach(),
            # Each modality's own in-modal term, for logging.
            **{
                f"in_modal_{m}": (share * t).detach()
                for m, t in zip(unit, in_terms)
            },
        }

    def _term(self, unit, columns, scale, targets, x, y, both_ways):
        """``t(x, y)`` for the views ``x`` and ``y``, each a ``(modality,
        view index)``: ``l(x -> y)``, averaged with ``l(y -> x)`` when
        ``both_ways``.
        """
        (m, i), (n, j) = x, y
        there = self._direction(
            self._logits(unit[m][i], columns[n][j], scale), targets
        )
        if not both_ways:
            return there
        back = self._direction(
            self._logits(unit[n][j], columns[m][i], scale), targets
        )
        return (there + back) / 2

    @staticmethod
    def _logits(rows, columns, scale):
        """``[rows, columns]`` scaled cosines (the views are unit vectors)."""
        return scale * (rows @ columns.T)

    def _columns(self, unit, rows, labels, groups, device):
        """The columns each row is scored against: this process's views,
        or every process's under DDP.

        Returns
        -------
        tuple
            ``(columns, offset, share, labels, groups)``: the column views
            per modality, where this process's rows start among them, its
            share of the global rows (1 without DDP) and the labels and
            groups of every column (None where not given).
        """
        labels, groups = (
            None if key is None else key.reshape(-1).to(device)
            for key in (labels, groups)
        )
        for key in (labels, groups):
            if key is not None and key.numel() != rows:
                raise ValueError(
                    f"TurboLoss got {key.numel()} labels/groups for a "
                    f"batch of {rows} rows: pass one per row of each view"
                )
        if not self._gathering():
            return unit, 0, 1.0, labels, groups
        sizes = _gather_sizes(rows, device)
        offset = sum(sizes[: torch.distributed.get_rank()])
        columns = {
            name: [_gather_with_grad(v, sizes) for v in pair]
            for name, pair in unit.items()
        }
        return (
            columns,
            offset,
            rows * len(sizes) / sum(sizes),
            _gather(labels, sizes),
            _gather(groups, sizes),
        )

    def _targets(self, rows, offset, labels, groups, device):
        """Which columns of each row are its positives and which are left
        out of its denominator.

        Returns
        -------
        dict
            ``index``: the column of each row's own other view;
            ``positives``: a boolean ``[rows, columns]`` mask of the
            same-label columns (``label_positives``), else None;
            ``excluded``: a boolean mask of the columns left out, or None.
        """
        positives = None
        if self.label_positives and labels is not None:
            positives = labels[offset : offset + rows, None] == labels
            excluded = self._masked_negatives(rows, offset, None, groups)
            if excluded is not None:
                excluded = excluded & ~positives
        else:
            excluded = self._masked_negatives(rows, offset, labels, groups)
        index = torch.arange(rows, device=device) + offset
        return {"index": index, "positives": positives, "excluded": excluded}

    @staticmethod
    def _direction(logits, targets):
        """``l(x -> y)`` from the ``[rows, columns]`` logits of x against y."""
        if targets["excluded"] is not None:
            logits = logits.masked_fill(targets["excluded"], float("-inf"))
        positives = targets["positives"]
        if positives is None:
            return F.cross_entropy(logits, targets["index"])
        log_p = logits.log_softmax(dim=-1).masked_fill(~positives, 0)
        return -(log_p.sum(dim=-1) / positives.sum(dim=-1)).mean()

    def _reduce(self, terms):
        """The mean or the sum (``reduction``) of ``terms``."""
        stacked = torch.stack(terms)
        return stacked.mean() if self.reduction == "mean" else stacked.sum()

    def _gathering(self):
        """Whether negatives come from every process of the group."""
        distributed = (
            torch.distributed.is_available()
            and torch.distributed.is_initialized()
            and torch.distributed.get_world_size() > 1
        )
        if self.gather_across_ranks is None:
            return distributed
        if self.gather_across_ranks and not distributed:
            raise RuntimeError(
                "gather_across_ranks=True needs an initialised process group "
                "of several processes (launch with torchrun)"
            )
        return bool(self.gather_across_ranks)

    def _masked_negatives(self, rows, offset, labels, groups):
        """Boolean ``[rows, columns]`` mask of the negatives left out, or None.

        Row ``i`` is global row ``offset + i``; entry ``(i, j)`` is True when
        column ``j`` (not row ``i`` itself) shares its label (``labels`` is
        None unless label-aware) or group. The relation is symmetric, so the
        same mask serves both directions of a term.
        """
        keys = [key for key in (labels, groups) if key is not None]
        if not keys:
            return None
        same = None
        for key in keys:
            match = key[offset : offset + rows, None] == key[None, :]
            same = match if same is None else same | match
        own = torch.arange(rows, device=same.device)
        same[own, own + offset] = False
        return same


class _GatherWithGrad(torch.autograd.Function):
    """All processes' rows, concatenated, with gradients back to the owner.

    Processes may hold different numbers of rows (``sizes``): each pads to
    the largest for ``all_gather``, and the padding is dropped. Backward
    sums every process's gradient of the gathered tensor and hands each
    process the slice of its own rows. (Written out because
    ``torch.distributed.nn.functional.all_gather`` is deprecated and its
    backward aborted the gloo processes of our tests with torch 2.14.)
    """

    @staticmethod
    def forward(ctx, tensor, sizes):
        """Gathers ``tensor`` ([n_rank, D]) from every process."""
        ctx.sizes = sizes
        return _gather_padded(tensor, sizes)

    @staticmethod
    def backward(ctx, grad):
        """Sums the gradients of all processes; returns this one's rows."""
        grad = grad.contiguous().clone()
        torch.distributed.all_reduce(grad)
        rank = torch.distributed.get_rank()
        start = sum(ctx.sizes[:rank])
        return grad[start : start + ctx.sizes[rank]], None


def symmetric_kl(first_logits, second_logits):
    """Symmetric KL divergence between two views' class posteriors, as in
    R-Drop (Liang et al., 2021): ``(KL(p1 || p2) + KL(p2 || p1)) / 2``,
    averaged over rows.

    Arguments
    ---------
    first_logits, second_logits : torch.Tensor
        ``[B, C]`` logits of the two views.

    Returns
    -------
    torch.Tensor
        0-dim tensor.

    Example
    -------
    >>> logits = torch.randn(4, 3)
    >>> float(symmetric_kl(logits, logits))
    0.0
    """
    first = first_logits.log_softmax(dim=-1)
    second = second_logits.log_softmax(dim=-1)
    forward = F.kl_div(second, first, log_target=True, reduction="batchmean")
    backward = F.kl_div(first, second, log_target=True, reduction="batchmean")
    return (forward + backward) / 2


def share_of_global_batch(rows, device):
    """The share of the global batch that this process holds.

    DDP averages gradients over processes, so a process's mean loss counts
    as much as any other's whatever its batch size. Multiplied by this
    share, the per-row mean losses of processes with batches of different
    sizes (e.g. sized by duration) average to the mean over the global
    batch. Every process must call it at the same step (a collective).

    Arguments
    ---------
    rows : int
        This process's batch size.
    device : torch.device
        Where the size is exchanged (the backend's device).

    Returns
    -------
    float
        ``rows * world_size / global rows``; 1.0 without a process group.

    Example
    -------
    >>> share_of_global_batch(5, "cpu")  # no process group
    1.0
    """
    if not (
        torch.distributed.is_available() and torch.distributed.is_initialized()
    ):
        return 1.0
    sizes = _gather_sizes(rows, device)
    return rows * len(sizes) / sum(sizes)


def _gather_sizes(rows, device):
    """Every process's number of rows, in rank order."""
    mine = torch.tensor([rows], device=device)
    sizes = [
        torch.empty_like(mine)
        for _ in range(torch.distributed.get_world_size())
    ]
    torch.distributed.all_gather(sizes, mine)
    return [int(size) for size in sizes]


def _gather_padded(tensor, sizes):
    """All processes' ``tensor`` (``sizes[r]`` rows each), concatenated."""
    tensor = tensor.contiguous()
    longest = max(sizes)
    if tensor.shape[0] < longest:
        padding = tensor.new_zeros(
            (longest - tensor.shape[0], *tensor.shape[1:])
        )
        tensor = torch.cat([tensor, padding])
    parts = [torch.empty_like(tensor) for _ in sizes]
    torch.distributed.all_gather(parts, tensor)
    return torch.cat([part[:size] for part, size in zip(parts, sizes)])


def _gather_with_grad(tensor, sizes):
    """All processes' ``tensor`` concatenated, gradients flowing back."""
    return _GatherWithGrad.apply(tensor, sizes)


def _gather(tensor, sizes):
    """All processes' ``tensor`` concatenated (no gradient), or None."""
    if tensor is None:
        return None
    return _gather_padded(tensor.reshape(-1), sizes)
