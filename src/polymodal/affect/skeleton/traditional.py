"""Traditional paradigm (spec affect.md 3.4): handcrafted affective gait features -> SVM (RBF) or random forest.

Representative of the survey's "Traditional" works (Crenn et al.; Kinect gait features + SVM). Features are
:class:`~polymodal.affect.skeleton.features.GaitFeatures` (the 29 STEP features, optional Laban extras),
standardised on the training data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from polymodal.affect.skeleton.features import GaitFeatures


@dataclass
class TraditionalClassifier:
    """``kind="svm"`` (RBF, ``C``, ``gamma``) or ``"rf"`` (``n_estimators`` trees) on standardised gait features.

    ``fit(gaits, y)`` / ``predict(gaits)`` take ``(N, T, 16, 3)`` arrays or lists of ``(T_i, 16, 3)`` gaits;
    ``fit_features`` / ``predict_features`` take precomputed feature matrices.

    >>> clf = TraditionalClassifier("svm").fit(data.x, data.y)   # doctest: +SKIP
    """

    kind: str = "svm"
    features: GaitFeatures = field(default_factory=GaitFeatures)
    C: float = 10.0
    gamma: str | float = "scale"
    n_estimators: int = 300
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ("svm", "rf"):
            raise ValueError(f"kind must be 'svm' or 'rf', got {self.kind!r}")
        self.model = None

    def _make(self):
        from sklearn.ensemble import RandomForestClassifier
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
        from sklearn.svm import SVC

        if self.kind == "svm":
            return make_pipeline(StandardScaler(), SVC(C=self.C, gamma=self.gamma, kernel="rbf", random_state=self.seed))
        return make_pipeline(StandardScaler(), RandomForestClassifier(self.n_estimators, random_state=self.seed,
                                                                      n_jobs=1))

    def fit_features(self, feats: np.ndarray, y: np.ndarray) -> TraditionalClassifier:
        self.model = self._make().fit(np.asarray(feats), np.asarray(y))
        return self

    def predict_features(self, feats: np.ndarray) -> np.ndarray:
        if self.model is None:
            raise RuntimeError("call fit() first")
        return self.model.predict(np.asarray(feats))

    def fit(self, gaits, y) -> TraditionalClassifier:
        return self.fit_features(self.features.transform(gaits), y)

    def predict(self, gaits) -> np.ndarray:
        return self.predict_features(self.features.transform(gaits))

    def num_parameters(self) -> int:
        """Stored numbers of the fitted model: SVM support vectors x features + dual coefficients + intercepts;
        RF: tree nodes (the survey compares model sizes; a rough analogue of a network's parameter count)."""
        if self.model is None:
            return 0
        est = self.model[-1]
        if self.kind == "svm":
            return int(est.support_vectors_.size + est.dual_coef_.size + est.intercept_.size)
        return int(sum(t.tree_.node_count for t in est.estimators_))
