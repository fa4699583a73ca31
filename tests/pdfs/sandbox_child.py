"""Stand-ins for the validator's child process, misbehaving in the ways the sandbox must
survive. Run as `python -I sandbox_child.py <behaviour> <the real child's arguments>`: the real
`main` runs (so the real resource limits are set), with the structural check replaced."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from reports import pdf_validation  # noqa: E402


def sleep(data: bytes) -> int:
    time.sleep(60)
    return 1


def spin(data: bytes) -> int:
    while True:
        pass


def allocate(data: bytes) -> int:
    hoard = []
    while True:
        hoard.append(bytearray(64 << 20))


def crash(data: bytes) -> int:
    os.abort()


def lie(data: bytes) -> int:
    sys.stdout.write('{"pages": 1, "verdict": "trust me"}')
    sys.stdout.flush()
    os._exit(0)


def invent_a_code(data: bytes) -> int:
    raise pdf_validation.PDFRejected("all-fine", "Accepted.")


def count_inherited_settings(data: bytes) -> int:
    """One page when none of the parent's ClinikUI or ClinikAPI settings reached the child."""
    return 1 + sum(name.startswith(("CLINIK", "DATABASE", "SECRET")) for name in os.environ)


def write_a_file(data: bytes) -> int:
    Path("/tmp/clinikui-child-wrote-this").write_bytes(b"x" * 10)
    return 1


if __name__ == "__main__":
    behaviour = sys.argv.pop(1)
    pdf_validation.check_structure = globals()[behaviour]
    sys.exit(pdf_validation.main())
