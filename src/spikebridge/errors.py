"""The one exception type users see: its message is a complete one-line explanation."""


class SpikebridgeError(ValueError):
    """Bad input or missing resource; the CLI prints the message and exits with status 2.

    A ``ValueError``, so code that expects bad values to raise one (scikit-learn's
    ``set_params`` / ``fit`` checks, ``except ValueError``) catches it too."""


def require_finite(features, split: str = "input") -> None:
    """Raise `SpikebridgeError` when ``features`` ``[n, D]`` (NumPy array or tensor)
    holds NaN or inf, naming ``split``, the first bad row and how many columns it spoils."""
    import numpy as np

    if hasattr(features, "detach"):  # a torch tensor, possibly on a GPU
        bad = (~features.detach().isfinite()).cpu().numpy()
    else:
        x = np.asarray(features)
        if x.dtype.kind not in "fc":  # integers and booleans are always finite
            return
        bad = ~np.isfinite(x)
    if bad.ndim == 1:
        bad = bad[None]
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=tuple(range(1, bad.ndim))))
        row = int(rows[0])
        raise SpikebridgeError(f"non-finite features (NaN or inf) in the {split} split: row {row} has "
                               f"{int(bad[row].sum())} of {bad[row].size} columns non-finite "
                               f"({len(rows)} bad rows of {len(bad)}); features must be finite")
