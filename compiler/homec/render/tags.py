"""Content-addressed image tags, computed offline from everything that goes into an image."""

from __future__ import annotations

import hashlib

from homec import __version__


def image_tag(app: str, flavor: str, model_uri: str, base_image: str, context: dict[str, bytes]) -> str:
    """Return ``<app>-<12 hex digits>``, a digest of the build context files, model, base image and homec version.

    The same inputs give the same tag on any machine, so the tag in a rendered manifest, a Jenkinsfile
    default and ``homec build`` agree without talking to each other.
    """
    digest = hashlib.sha256()
    for part in (f"homec {__version__}", f"flavor {flavor}", f"model {model_uri}", f"base {base_image}"):
        digest.update(part.encode("utf-8") + b"\0")
    for path in sorted(context):
        data = context[path]
        digest.update(f"file {path} {len(data)}".encode() + b"\0" + data)
    return f"{app}-{digest.hexdigest()[:12]}"
