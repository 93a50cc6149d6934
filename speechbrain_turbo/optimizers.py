"""The optimizers of a TurboBrain: the pretrained encoders' own.

Pretrained encoders want a far smaller learning rate than freshly
initialised heads. :class:`EncoderOptimizers` gives them an optimizer of
their own (``encoder_opt_class``) and keeps scalars, and optionally
vectors, out of weight decay in both.

Authors
 * speechbrain-turbo contributors
"""

from speechbrain.utils.logger import get_logger

logger = get_logger(__name__)


def encoder_parameters(modules, only_pretrained=False):
    """The trainable parameters of the ``*_encoder`` modules.

    Arguments
    ---------
    modules : torch.nn.ModuleDict
        A Brain's modules.
    only_pretrained : bool
        Leave out the new parts inside the encoders (a submodule marked
        ``trained_at_head_lr``, e.g. a learned weighted sum of layers).

    Returns
    -------
    list of torch.nn.Parameter

    Example
    -------
    >>> import torch
    >>> modules = torch.nn.ModuleDict(
    ...     {
    ...         "audio_encoder": torch.nn.Linear(2, 2),
    ...         "head": torch.nn.Linear(2, 1),
    ...     }
    ... )
    >>> [tuple(p.shape) for p in encoder_parameters(modules)]
    [(2, 2), (2,)]
    """
    params = []
    for name, module in modules.items():
        if not name.endswith("_encoder"):
            continue
        new = set()
        if only_pretrained:
            new = {
                id(param)
                for part in module.modules()
                if getattr(part, "trained_at_head_lr", False)
                for param in part.parameters()
            }
        params += [
            param
            for param in module.parameters()
            if param.requires_grad and id(param) not in new
        ]
    return params


class EncoderOptimizers:
    """Mixin for a ``speechbrain.Brain`` subclass: one optimizer, or two
    with ``encoder_opt_class`` in the hparams (see :meth:`init_optimizers`).

    Example
    -------
    >>> import speechbrain as sb
    >>> import torch
    >>> class TwoRates(EncoderOptimizers, sb.Brain):
    ...     pass
    >>> modules = {
    ...     "audio_encoder": torch.nn.Linear(2, 2),
    ...     "classifier": torch.nn.Linear(2, 1),
    ... }
    >>> brain = TwoRates(
    ...     modules,
    ...     opt_class=lambda params: torch.optim.AdamW(params, lr=1e-3),
    ...     hparams={
    ...         "encoder_opt_class": lambda params: torch.optim.AdamW(
    ...             params, lr=1e-5
    ...         )
    ...     },
    ... )
    >>> brain.init_optimizers()
    >>> sorted(brain.optimizers_dict)
    ['encoders', 'heads']
    """

    def init_optimizers(self):
        """One optimizer, or two with ``encoder_opt_class``.

        ``Brain.init_optimizers`` builds one optimizer over every parameter.
        Pretrained encoders want a far smaller learning rate than the freshly
        initialised heads: with ``encoder_opt_class`` in the hparams, the
        trainable parameters of every ``*_encoder`` module go to it, except
        new ones inside it (a submodule's ``trained_at_head_lr``, e.g. a
        learned weighted sum of layers), and ``opt_class`` trains the rest.
        Both are checkpointed, and both leave out of weight decay what
        :meth:`_decay_groups` says.
        """
        encoder_opt_class = getattr(self.hparams, "encoder_opt_class", None)
        encoder_params = []
        if encoder_opt_class is not None:
            encoder_params = encoder_parameters(
                self.modules, only_pretrained=True
            )
        in_encoders = {id(param) for param in encoder_params}
        head_params = [
            param
            for param in self.modules.parameters()
            if param.requires_grad and id(param) not in in_encoders
        ]
        self.optimizer = self.opt_class(self._decay_groups(head_params))
        self.optimizers_dict = {"heads": self.optimizer}
        if self.checkpointer is not None:
            self.checkpointer.add_recoverable("optimizer", self.optimizer)
        if encoder_opt_class is None:
            return
        if not encoder_params:
            logger.info("The encoders are frozen: encoder_opt_class unused")
            return
        self.encoder_optimizer = encoder_opt_class(
            self._decay_groups(encoder_params)
        )
        self.optimizers_dict["encoders"] = self.encoder_optimizer
        if self.checkpointer is not None:
            self.checkpointer.add_recoverable(
                "encoder_optimizer", self.encoder_optimizer
            )

    def _decay_groups(self, params):
        """Parameter groups: scalars (the learned temperature) never get
        weight decay, vectors (biases, norms) not when
        ``remove_vector_weight_decay`` is set; the rest do. SpeechBrain's
        own grouping only covers one optimizer and decays scalars.
        """
        no_decay_below = 2 if self.remove_vector_weight_decay else 1
        decay = [p for p in params if p.dim() >= no_decay_below]
        no_decay = [p for p in params if p.dim() < no_decay_below]
        groups = [{"params": decay}]
        if no_decay:
            groups.append({"params": no_decay, "weight_decay": 0.0})
        return groups
