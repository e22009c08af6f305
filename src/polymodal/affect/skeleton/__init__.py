"""Skeleton-based emotion recognition: the survey's four paradigms (spec affect.md section 3).

Ten-line use::

    from polymodal.affect.skeleton import make_synthetic_gaits, GaitFeatures, TraditionalClassifier, STGCN
    data = make_synthetic_gaits(n_per_class=100, T=48, seed=0)      # or load_gaits("features.h5", "labels.h5")
    feats = GaitFeatures().transform(data.x)                          # (N, 29) STEP affective features
    clf = TraditionalClassifier("svm").fit_features(feats[:300], data.y[:300])
    print((clf.predict_features(feats[300:]) == data.y[300:]).mean())
"""

from polymodal.affect.skeleton.features import LABAN, STEP_FEATURES, GaitFeatures, foot_strikes
from polymodal.affect.skeleton.loaders import (
    EMOTION_GAIT_LABELS,
    load_emotion_gait,
    load_gaits,
    load_numpy_gaits,
)
from polymodal.affect.skeleton.models import (
    STGCN,
    SkeletonImageCNN,
    STEPNet,
    count_parameters,
    skeleton_to_image,
)
from polymodal.affect.skeleton.skeleton import (
    JOINT_NAMES,
    MIRROR,
    PARENTS,
    Skeleton16,
    normalize_adjacency,
    normalize_sequence,
    resample_time,
)
from polymodal.affect.skeleton.synthetic import EMOTIONS, GaitDataset, make_synthetic_gaits
from polymodal.affect.skeleton.traditional import TraditionalClassifier
from polymodal.affect.skeleton.training import fit_network, predict_network

__all__ = [
    "EMOTIONS", "EMOTION_GAIT_LABELS", "JOINT_NAMES", "LABAN", "MIRROR", "PARENTS", "STEP_FEATURES", "STGCN",
    "GaitDataset", "GaitFeatures", "STEPNet", "Skeleton16", "SkeletonImageCNN", "TraditionalClassifier",
    "count_parameters", "fit_network", "foot_strikes", "load_emotion_gait", "load_gaits", "load_numpy_gaits",
    "make_synthetic_gaits", "normalize_adjacency", "normalize_sequence", "predict_network", "resample_time",
    "skeleton_to_image",
]
