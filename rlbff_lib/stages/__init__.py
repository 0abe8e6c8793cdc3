"""One module per DVC stage, the back-end of notebooks/<stage>.ipynb (same names as dvc.yaml): each holds the
stage's config class and the functions its notebook calls. No stage imports another.
"""
