"""tests/integration/mgharness/paths.py - where the source tree and the build tree are.

ctest passes MG_SOURCE_DIR and MG_BUILD_DIR; when a pytest file is run by
hand they default to the checkout containing this file and <source>/build.
"""

import os

_HERE = os.path.dirname(os.path.abspath(__file__))


def source_dir():
    """source_dir returns the project's source directory."""
    default = os.path.abspath(os.path.join(_HERE, "..", "..", ".."))
    return os.environ.get("MG_SOURCE_DIR") or default


def build_dir():
    """build_dir returns the CMake build directory ($MG_BUILD_DIR or <source>/build)."""
    return os.environ.get("MG_BUILD_DIR") or os.path.join(source_dir(), "build")


def integration_dir():
    """integration_dir returns tests/integration (the directory holding mgharness)."""
    return os.path.dirname(_HERE)


def build_path(*parts):
    """build_path returns a path inside the build directory, e.g. build_path('ha', 'pgdaemon')."""
    return os.path.join(build_dir(), *parts)
