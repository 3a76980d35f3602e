"""Sphinx configuration for skbatch's documentation."""

import skbatch

project = "skbatch"
author = "The skbatch developers"
copyright = "2026, The skbatch developers"
release = skbatch.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.doctest",
    "numpydoc",
]

autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": True}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False

templates_path = ["_templates"]
exclude_patterns = ["_build", "generated/*.examples"]
html_theme = "pydata_sphinx_theme"
html_static_path = ["_static"]
html_title = f"skbatch {release}"
html_theme_options = {"navigation_with_keys": False}
