"""Build hook: generates the gRPC code from the repository's protos.

Everything else about the package is in pyproject.toml. ``build_py`` (which
wheels, ``pip install`` and editable installs all run) and ``sdist`` first run
scripts/generate.py, so a clean checkout needs no generated file. An sdist
carries the generated code (it has no protos to generate from), and a build
from it uses that code as it is.
"""

import importlib.util
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

HERE = Path(__file__).resolve().parent
GENERATED = HERE / "src" / "opendms" / "_gen" / "dms" / "v1"


def _generate() -> None:
    spec = importlib.util.spec_from_file_location("_dms_generate", HERE / "scripts" / "generate.py")
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    if generate.available():
        generate.generate()
    elif not list(GENERATED.glob("*_pb2.py")) or not (GENERATED.parent.parent / "reasons.py").exists():
        raise SystemExit(
            "opendms: no protos to generate from (expected proto/dms/v1 two levels up) "
            "and no generated code in src/opendms/_gen: build from a checkout of the repository"
        )


class BuildPy(build_py):
    def run(self):
        _generate()
        super().run()


class SDist(sdist):
    def run(self):
        _generate()
        super().run()


setup(cmdclass={"build_py": BuildPy, "sdist": SDist})
