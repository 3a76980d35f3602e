"""skbatch's own exception classes."""


class NotRowWiseError(ValueError):
    """A method returned something other than one entry per input row.

    Batching splits rows, so it can only reproduce methods whose output for a
    row depends on that row alone. When the first rows of a call show this
    error, the estimator is called once on the whole input instead.
    """
