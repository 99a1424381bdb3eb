"""Shared by the examples: scikit-learn's 8x8 digits as 64 pixel features (offline, instant).

Pass ``--lite0`` to an example to use EfficientNet-Lite0 features of the same images instead
(``spikebridge.dataset_features("digits")``, offline weights; about a minute the first time, cached after).
"""

import sys

import numpy as np


def digits():
    """``(X_train, X_val, y_train, y_val)``."""
    if "--lite0" in sys.argv:
        import spikebridge as sb

        X, y = sb.dataset_features("digits", split="train")
        X_val, y_val = sb.dataset_features("digits", split="val")
        return X, X_val, y, y_val
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    return train_test_split(x.astype(np.float32), y, test_size=0.25, stratify=y, random_state=0)
