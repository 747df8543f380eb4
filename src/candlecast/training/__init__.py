"""Training drivers above the models: the walk-forward run of every model across the folds
(``walkforward``) and the chronological hold-out of the quick ``train`` stage (``holdout``).
Import the submodules you need; this package imports nothing heavy."""
