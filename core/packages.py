"""twinflow's packages: the one list every consumer reads (setup.py, the code fingerprint, the layering test).

Each is a top-level folder of the repository, installed as ``twinflow.<name>`` (setup.py maps
the folders into the one namespace). Plain data, no imports: setup.py reads this file before
anything is installed.
"""

NAMESPACE = "twinflow"

# Lowest layer first (tests/test_layering.py states what each may import).
PACKAGES = ("core", "schemas", "model_store", "components", "trainers", "serving", "pipelines")

# Files other than Python that packages need at run time (curated schemas, the report's template): setuptools
# package_data patterns, for every package folder.
PACKAGE_DATA = ["*.pbtxt", "*.j2"]


def require_namespace(module_name: str) -> None:
    """Refuse a twinflow package imported under its folder's bare name (``import core`` from the checkout's
    root): a second copy of each module, which Beam would pickle by the wrong path."""
    if not module_name.startswith(NAMESPACE + "."):
        raise ImportError(
            f"twinflow's packages are imported as {NAMESPACE}.<name>: import {NAMESPACE}.{module_name}, "
            f"not {module_name} (the checkout's folder found as a top-level package makes a second copy of it)"
        )
