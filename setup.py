"""Install each top-level package folder as ``twinflow.<name>`` (the list lives in core/packages.py).

pyproject.toml holds the project's metadata; this file only maps the folders into the one
namespace, which static configuration cannot compute.
"""

import runpy
from pathlib import Path

from setuptools import find_namespace_packages, setup

ROOT = Path(__file__).resolve().parent
listing = runpy.run_path(str(ROOT / "core" / "packages.py"))
namespace, packages = listing["NAMESPACE"], [p for p in listing["PACKAGES"] if (ROOT / p).is_dir()]

setup(
    package_dir={f"{namespace}.{name}": name for name in packages},
    packages=[
        f"{namespace}.{name}{'.' + sub if sub else ''}"
        for name in packages
        # Namespace packages too: folders of data alone (schemas/fashion_mnist, the report's templates) ship as well.
        for sub in ["", *find_namespace_packages(where=str(ROOT / name), exclude=["*__pycache__*"])]
    ],
    package_data={"*": listing["PACKAGE_DATA"]},
)
