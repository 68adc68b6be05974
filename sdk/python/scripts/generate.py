#!/usr/bin/env python3
"""Generates the Python gRPC code of the public DMS API into the package.

Runs ``python -m grpc_tools.protoc`` (the grpcio-tools that the build pins, so
the generated code matches the protobuf and grpcio runtimes the package
requires) on ``proto/dms/v1/*.proto`` of this repository, with the vendored
``third_party/googleapis`` on the include path, and writes ``*_pb2.py``,
``*_pb2.pyi`` and ``*_pb2_grpc.py`` to ``src/opendms/_gen/dms/v1``, and the
``Reason`` enum (the values of ``dms.v1.ErrorReason``) to
``src/opendms/_gen/reasons.py``.

protoc writes absolute imports named after the proto packages (``from dms.v1
import message_pb2``); they are rewritten to point into ``opendms._gen`` so the
generated modules do not claim the top-level ``dms`` package. ``google.api``
and ``google.protobuf`` imports are left alone: they resolve to the
``googleapis-common-protos`` and ``protobuf`` packages from PyPI.

The build runs this script (see ``setup.py``); run it by hand after changing a
proto when working from a checkout:

    python sdk/python/scripts/generate.py
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

SDK = Path(__file__).resolve().parent.parent
REPO = SDK.parent.parent
OUT = SDK / "src" / "opendms" / "_gen"
PACKAGE = "opendms._gen"

# `from dms.v1 import x_pb2` and `import dms.v1.x_pb2` (protoc writes the
# former for cross-file imports; the latter can appear in .pyi files).
_FROM_IMPORT = re.compile(r"^(\s*)from dms\.v1 import ", re.MULTILINE)
_PLAIN_IMPORT = re.compile(r"^(\s*)import dms\.v1\.(\w+)", re.MULTILINE)
# The module name protoc bakes into the message classes (their __module__,
# which pickle and repr use).
_MODULE_NAME = re.compile(r"(BuildTopDescriptorsAndMessages\(DESCRIPTOR, )'dms\.v1\.")


def proto_sources(proto_root: Path) -> list[Path]:
    return sorted((proto_root / "dms" / "v1").glob("*.proto"))


def available(proto_root: Path = REPO / "proto") -> bool:
    """Whether the protos are there to generate from (a checkout, not an sdist)."""
    return bool(proto_sources(proto_root))


def generate(
    proto_root: Path = REPO / "proto",
    googleapis_root: Path = REPO / "third_party" / "googleapis",
    out: Path = OUT,
) -> list[Path]:
    """Generates the code and returns the files written."""
    try:
        from grpc_tools import protoc  # noqa: F401  (only to fail early and clearly)
        import grpc_tools
    except ImportError:
        sys.exit("generate.py: grpcio-tools is not installed (pip install -c sdk/python/constraints.txt grpcio-tools)")
    sources = proto_sources(proto_root)
    if not sources:
        sys.exit(f"generate.py: no protos in {proto_root / 'dms' / 'v1'}")
    well_known = Path(grpc_tools.__file__).resolve().parent / "_proto"

    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable, "-m", "grpc_tools.protoc",
            f"-I{proto_root}",
            f"-I{googleapis_root}",
            f"-I{well_known}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            f"--descriptor_set_out={tmp}/descriptors.pb",
            "--include_source_info",
            *(str(s.relative_to(proto_root)) for s in sources),
        ]
        subprocess.run(cmd, cwd=proto_root, check=True)

        target = out / "dms" / "v1"
        target.mkdir(parents=True, exist_ok=True)
        # Old outputs of protos since removed must not linger.
        for old in target.glob("*_pb2*.py*"):
            old.unlink()
        written = []
        reasons = out / "reasons.py"
        reasons.write_text(reasons_module(Path(tmp) / "descriptors.pb"))
        written.append(reasons)
        for src in sorted((Path(tmp) / "dms" / "v1").iterdir()):
            text = fix_imports(src.read_text())
            dst = target / src.name
            dst.write_text(text)
            written.append(dst)
    for pkg in (out, out / "dms", out / "dms" / "v1"):
        init = pkg / "__init__.py"
        if not init.exists():
            init.write_text('"""Generated from proto/ by scripts/generate.py; never edited."""\n')
    return written


def reasons_module(descriptor_set: Path) -> str:
    """The source of the Reason enum: one member per dms.v1.ErrorReason value
    (its name without the prefix), documented with the value's comment."""
    from google.protobuf import descriptor_pb2

    files = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set.read_bytes())
    (f,) = [f for f in files.file if f.name == "dms/v1/error_reason.proto"]
    (index, enum) = next((i, e) for i, e in enumerate(f.enum_type) if e.name == "ErrorReason")
    comments = {
        tuple(loc.path): loc.leading_comments
        for loc in f.source_code_info.location
        if loc.leading_comments
    }
    lines = [
        '"""Generated from proto/dms/v1/error_reason.proto by scripts/generate.py; never edited."""',
        "",
        "import enum",
        "",
        "",
        "class Reason(str, enum.Enum):",
        '    """The stable, machine-readable reasons of DMS errors: the names of the',
        "    ``dms.v1.ErrorReason`` values without their ``ERROR_REASON_`` prefix.",
        "",
        "    Branch on reasons (or on codes), never on messages. A newer server may",
        "    send reasons this enum lacks: ``DMSError.reason`` is a plain ``str``,",
        '    which compares equal to the members of this enum."""',
        "",
    ]
    # FileDescriptorProto.enum_type is field 5, EnumDescriptorProto.value 2.
    for i, v in enumerate(enum.value):
        if v.number == 0:
            continue
        name = v.name.removeprefix("ERROR_REASON_")
        for comment in comments.get((5, index, 2, i), "").strip().splitlines():
            lines.append(f"    #: {comment.strip()}".rstrip())
        lines.append(f'    {name} = "{name}"')
    lines += ["", "    def __str__(self) -> str:", "        return self.value", ""]
    return "\n".join(lines)


def fix_imports(text: str) -> str:
    text = _FROM_IMPORT.sub(rf"\1from {PACKAGE}.dms.v1 import ", text)
    text = _PLAIN_IMPORT.sub(rf"\1import {PACKAGE}.dms.v1.\2", text)
    return _MODULE_NAME.sub(rf"\1'{PACKAGE}.dms.v1.", text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proto-root", type=Path, default=REPO / "proto")
    parser.add_argument("--googleapis-root", type=Path, default=REPO / "third_party" / "googleapis")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    for path in generate(args.proto_root, args.googleapis_root, args.out):
        print(path.relative_to(SDK) if path.is_relative_to(SDK) else path)


if __name__ == "__main__":
    main()
