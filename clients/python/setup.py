"""Generates the gRPC stubs from Custos's .proto files into the build.

The protos are read from $CUSTOS_PROTO_DIR, else from ../../proto (pip
builds this directory in place: `pip install ./clients/python`).
"""

import os
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithStubs(build_py):
    def run(self):
        super().run()
        from grpc_tools import protoc  # a build requirement (pyproject.toml)

        here = Path(__file__).resolve().parent
        protos = Path(os.environ.get("CUSTOS_PROTO_DIR", here.parent.parent / "proto"))
        files = sorted(str(p.relative_to(protos)) for p in protos.glob("custos/v1/*.proto"))
        if not files:
            raise SystemExit(f"no custos/v1/*.proto under {protos}; set CUSTOS_PROTO_DIR")
        out = Path(self.build_lib)
        # protoc names the modules after the proto paths: custos.v1.signing_pb2, ...
        code = protoc.main(
            ["protoc", f"-I{protos}", f"--python_out={out}", f"--grpc_python_out={out}", *files]
        )
        if code != 0:
            raise SystemExit(f"protoc failed ({code})")
        (out / "custos" / "v1" / "__init__.py").write_text("")


setup(cmdclass={"build_py": BuildWithStubs})
