"""Stage 2 as reported: a change classifier over the stage-1 probabilities a user was shown.

The network's stage 2 reads the network's own emotion vectors. What the model reports per step is
more: the network's stage 1 averaged with the lexical classifier's (models/lexical.py) and moved by
the lexicon prior. A change is a step whose reported emotion moved away from the steps before it, so
this logistic regression reads the reported probabilities of this step and of the ``history`` steps
before it (their logs, log ratios and products: "was mostly A, now mostly B"), and the network's own
change logit. Its probability replaces the network's as the reported ``change_prob`` once it is
fitted; training's loss keeps reading the network's.

It is fitted after training by scikit-learn (:func:`fit_change_classifier`), on timelines built from
the validation posts with a seed of their own: on the training posts the network's and the lexical
classifier's probabilities are overconfident, and a regression fitted there would trust them too far.
Measured: docs/model/README.md ("Stage 2 over the reported probabilities").

>>> classifier = ChangeClassifier(n_labels=2, history=1)
>>> probs = torch.tensor([[0.9, 0.1]])
>>> history, has_history = torch.tensor([[[0.2, 0.8]]]), torch.tensor([[True]])
>>> features = classifier.features(probs, history, has_history, network_logit=torch.tensor([0.0]))
>>> features.shape[-1] == classifier.n_features, classifier(features) is None   # not fitted yet
(True, True)
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

#: Keeps the logs finite where a probability is 0.
EPSILON = 1e-4
#: scikit-learn's inverse regularisation strength (C = 10 was unstable on 150 timelines; 1 was not).
REGULARISATION_C = 1.0


class ChangeClassifier(nn.Module):
    """Logistic regression over :meth:`features`; its weights are buffers that scikit-learn fills."""

    def __init__(self, n_labels: int, history: int) -> None:
        super().__init__()
        self.n_labels, self.history = n_labels, history
        self.n_features = n_labels + 2 + history * (2 * n_labels + 1 + n_labels * n_labels)
        self.register_buffer("weight", torch.zeros(self.n_features))
        self.register_buffer("bias", torch.zeros(()))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))
        # ``fitted`` read once, not per call: reading a tensor on a GPU waits for the device.
        self.is_fitted = False
        # A module-level function, not a lambda: a model holding a lambda cannot be pickled.
        self.register_load_state_dict_post_hook(_read_fitted_after_load)

    def mark_fitted(self) -> None:
        """Report this classifier's logit from now on (its weights are set)."""
        self.fitted.fill_(True)
        self._read_fitted()

    def _read_fitted(self) -> None:
        self.is_fitted = bool(self.fitted)

    def features(self, probs: torch.Tensor, history: torch.Tensor, has_history: torch.Tensor,
                 network_logit: torch.Tensor) -> torch.Tensor:
        """[..., n_features] from this step's reported probabilities ([..., labels]), the previous
        steps' ([..., history, labels], the latest first; ``has_history`` [..., history] says which
        steps exist) and the network's change logit ([...])."""
        log_probs = (probs + EPSILON).log()
        network = network_logit[..., None]
        columns = [log_probs, network.sigmoid(), torch.nn.functional.logsigmoid(network)]
        for k in range(self.history):
            earlier, known = history[..., k, :], has_history[..., k, None].to(probs.dtype)
            log_earlier = (earlier + EPSILON).log()
            moved = (probs[..., :, None] * earlier[..., None, :]).flatten(-2)  # [..., now × then]
            columns += [log_earlier * known, known, (log_probs - log_earlier) * known, moved * known]
        return torch.cat(columns, dim=-1)

    def forward(self, features: torch.Tensor) -> torch.Tensor | None:
        """The change logit [...]; None until fitted."""
        if not self.is_fitted:
            return None
        return features @ self.weight + self.bias


def _read_fitted_after_load(classifier: ChangeClassifier, _incompatible_keys: object) -> None:
    classifier._read_fitted()


def fit_change_classifier(classifier: ChangeClassifier, features: Sequence[np.ndarray | torch.Tensor],
                          targets: Sequence[np.ndarray], seed: int = 0) -> None:
    """Fit ``classifier`` on timelines' step features ([T, n_features] each) and change targets
    ([T], 1 on a regime's first steps: models/datasets/timelines.py)."""
    from sklearn.linear_model import LogisticRegression

    x = np.concatenate([np.asarray(f) for f in features])
    y = np.concatenate(list(targets)).astype(int)
    regression = LogisticRegression(C=REGULARISATION_C, max_iter=3000, random_state=seed).fit(x, y)
    with torch.no_grad():
        classifier.weight.copy_(torch.as_tensor(regression.coef_[0], dtype=torch.float32))
        classifier.bias.fill_(float(regression.intercept_[0]))
        classifier.mark_fitted()
