"""What a signature binds, and checking that it still binds it (RELIABILITY SIG-02, SIG-04).

The canonical content of a version is the JSON body it becomes (without file data), the SHA-256,
name and size of each attached file, the report's id and the version's number, serialised with
sorted keys and no spaces. Its SHA-256 is what a `Signature` stores. Because the report and the
version are part of what is hashed, a signature moved to another version or copied to another
report no longer matches, even when the two say the same thing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from reports.models import ReportVersion, Signature
from reports.payload import ReportContent, build_payload


def canonical_content(version: ReportVersion) -> dict[str, Any]:
    content = ReportContent.from_json(version.content)
    return {
        "report": version.report_id,
        "version": version.number,
        "body": build_payload(content),
        "files": [
            {"sha256": item.sha256, "filename": item.filename, "size": item.size}
            for item in content.attachments
        ],
    }


def canonical_json(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def content_hash(version: ReportVersion) -> str:
    return hashlib.sha256(canonical_json(canonical_content(version))).hexdigest()


@dataclass(frozen=True, slots=True)
class Verification:
    ok: bool
    reason: str = ""


def verify_signature(
    signature: Signature, *, file_bytes: Callable[[str], bytes] | None = None
) -> Verification:
    """Whether the signature still binds the content it was given for.

    With `file_bytes(sha256)`, the stored files are hashed again too, so a file changed in the
    database after signing is caught as well.
    """
    version = ReportVersion.objects.get(pk=signature.version_id)
    if version.report_id != signature.report_id:
        return Verification(False, "the signature points at a version of another report")
    if content_hash(version) != signature.content_hash:
        return Verification(False, "the signed content has changed since it was signed")
    if file_bytes is not None:
        for item in ReportContent.from_json(version.content).attachments:
            try:
                data = file_bytes(item.sha256)
            except KeyError:
                return Verification(False, f"the signed file {item.filename} is missing")
            if hashlib.sha256(data).hexdigest() != item.sha256:
                return Verification(False, f"the signed file {item.filename} has changed")
    return Verification(True)
