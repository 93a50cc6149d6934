"""The Turbo objective: in-modal and cross-modal InfoNCE over two dropout views.

Each modality ``m`` arrives as two views ``(m1, m2)`` of the same batch, drawn
by two forward passes that differ only in their dropout masks. With every view
L2-normalised and ``s(x, y) = x . y / temperature``::

    l(x -> y)   = mean_i -log( exp s(x_i, y_i) / sum_j exp s(x_i, y_j) )
    sym(x, y)   = (l(x -> y) + l(y -> x)) / 2
    in_modal    = mean over modalities m of sym(m1, m2)
    cross_modal = mean over modality pairs (m, n), m != n, and the four view
                  pairs (m1, n1), (m1, n2), (m2, n1), (m2, n2) of sym
    loss        = in_modal_weight * in_modal + cross_modal_weight * cross_modal

Negatives ``j`` can be left out of a row's denominator: those sharing row
``i``'s label (``label_aware``) and those sharing its group (``groups``, e.g.
the same transcript), since identical or same-class inputs are not negatives.

Authors
 * speechbrain-turbo contributors
"""

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
    learn_temperature : bool
        If True, the inverse temperature is a parameter initialised to
        ``1 / temperature`` (stored as its log) and clamped at 100.

    Example
    -------
    >>> loss_fn = TurboLoss(temperature=0.1)
    >>> a1, a2, t1, t2 = torch.randn(4, 8, 16).unbind(0)
    >>> out = loss_fn({"audio": (a1, a2), "text": (t1, t2)})
    >>> sorted(out)
    ['cross_modal', 'in_modal', 'inverse_temperature', 'loss']
    >>> out["loss"].shape
    torch.Size([])
    """

    MAX_INVERSE_TEMPERATURE = 100.0

    def __init__(
        self,
        temperature=0.05,
        in_modal_weight=1.0,
        cross_modal_weight=1.0,
        label_aware=False,
        learn_temperature=False,
    ):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.in_modal_weight = in_modal_weight
        self.cross_modal_weight = cross_modal_weight
        self.label_aware = label_aware
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
            The scale of the logits, clamped at 100 when it is learned.

        Example
        -------
        >>> TurboLoss(temperature=0.5).inverse_temperature()
        tensor(2.)
        """
        scale = self.log_inverse_temperature.float().exp()
        if self.learn_temperature:
            scale = scale.clamp(max=self.MAX_INVERSE_TEMPERATURE)
        return scale

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
            0-dim tensors: ``loss``, ``in_modal``, ``cross_modal`` and
            ``inverse_temperature`` (detached, for logging).

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
            first = unit[next(iter(unit))][0]
            masked = self._masked_negatives(first, labels, groups)

            def sym(x, y):
                logits = scale * (x @ y.T)
                if masked is not None:
                    logits = logits.masked_fill(masked, float("-inf"))
                targets = torch.arange(len(x), device=x.device)
                return (
                    F.cross_entropy(logits, targets)
                    + F.cross_entropy(logits.T, targets)
                ) / 2

            in_modal = torch.stack([sym(v1, v2) for v1, v2 in unit.values()])
            cross_terms = [
                sym(x, y)
                for m, n in itertools.combinations(unit, 2)
                for x in unit[m]
                for y in unit[n]
            ]
            in_modal = in_modal.mean()
            if cross_terms:
                cross_modal = torch.stack(cross_terms).mean()
            else:
                cross_modal = in_modal.new_zeros(())
        loss = (
            self.in_modal_weight * in_modal
            + self.cross_modal_weight * cross_modal
        )
        return {
            "loss": loss,
            "in_modal": in_modal,
            "cross_modal": cross_modal,
            "inverse_temperature": scale.detach(),
        }

    def _masked_negatives(self, reference, labels, groups):
        """Boolean ``[B, B]`` mask of the negatives left out, or None.

        Entry ``(i, j)`` is True when ``j != i`` shares row ``i``'s label
        (label-aware mode) or group. The relation is symmetric, so the same
        mask serves both directions of ``sym``.
        """
        batch_size = reference.shape[0]
        same = torch.zeros(
            batch_size, batch_size, dtype=torch.bool, device=reference.device
        )
        keys = []
        if self.label_aware and labels is not None:
            keys.append(labels)
        if groups is not None:
            keys.append(groups)
        if not keys:
            return None
        for key in keys:
            key = key.reshape(-1).to(reference.device)
            if key.shape[0] != batch_size:
                raise ValueError(
                    f"TurboLoss got {key.shape[0]} labels/groups for a batch "
                    f"of {batch_size} rows: pass one per row of each view"
                )
            same |= key[:, None] == key[None, :]
        same.fill_diagonal_(False)
        return same
