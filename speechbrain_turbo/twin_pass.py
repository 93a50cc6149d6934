"""The Turbo twin pass for a recipe that keeps its own Brain.

``TurboBrain`` runs the twin pass over modules named after its modalities.
A recipe with a Brain of its own (e.g. SpeechBrain's emotion recipes: a
wav2vec 2.0 encoder, pooling, a classifier) needs two lines instead: the
embeddings come from :func:`twin_pass`, and
:class:`speechbrain_turbo.losses.TurboLoss` is added to its loss.
``docs/extend_a_recipe.md`` shows the change on such a recipe.

Authors
 * speechbrain-turbo contributors
"""

import torch

__all__ = ["twin_pass"]


def twin_pass(module, *inputs, sequential=False, **kwargs):
    """Runs ``module`` ONCE over every tensor input doubled along the batch
    axis, and splits each output into its two dropout views.

    The two copies of each row draw independent dropout masks, which makes
    the two views of the Turbo objective; one forward over ``2B`` rows
    costs less than two over ``B`` (one kernel launch, no second weight
    read). Augment the batch before the call, so that the views differ by
    dropout only. Call it in training only: in evaluation, dropout is off
    and the two views would be equal.

    Arguments
    ---------
    module : callable
        E.g. an encoder with its pooling: ``module(wavs, lengths)``.
    *inputs : torch.Tensor or object
        Positional inputs; tensors (the batch, the relative lengths) are
        doubled along dim 0, anything else is passed as is.
    sequential : bool
        If True, run ``module`` twice over the inputs as they are instead
        (less working memory per forward, same views in distribution).
    **kwargs : dict
        Keyword inputs, passed as is.

    Returns
    -------
    tuple
        ``(view_1, view_2)`` of ``B`` rows each; for a module returning a
        tuple of tensors, one such pair per output.

    Example
    -------
    >>> encoder = torch.nn.Sequential(
    ...     torch.nn.Linear(4, 8), torch.nn.Dropout(0.5)
    ... )
    >>> first, second = twin_pass(encoder, torch.randn(3, 4))
    >>> first.shape, bool((first != second).any())
    (torch.Size([3, 8]), True)
    """
    if sequential:
        first, second = module(*inputs, **kwargs), module(*inputs, **kwargs)
        if isinstance(first, tuple):
            return tuple(zip(first, second))
        return first, second
    doubled = [torch.cat([x, x]) if torch.is_tensor(x) else x for x in inputs]
    output = module(*doubled, **kwargs)
    if isinstance(output, tuple):
        return tuple(_views(part) for part in output)
    return _views(output)


def _views(output):
    """A doubled-batch output's two halves (view 1 rows first)."""
    if output.shape[0] % 2:
        raise ValueError(
            f"twin_pass: the module returned {output.shape[0]} rows for a "
            "doubled batch; it must keep the batch axis first"
        )
    return tuple(output.chunk(2))
