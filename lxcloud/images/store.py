"""The template library ("secondary storage"): validated archives kept as `<image-id>.<format>`."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

from lxcloud.core.errors import InvalidInput, NotFound
from lxcloud.images.unpack import FORMATS, ArchiveInfo, check_archive

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
# Longest first, so "x.tar.gz" is never taken for "x.tar" + junk.
_SUFFIXES = tuple(sorted(FORMATS, key=len, reverse=True))


class TemplateStore:
    """Template archives in one directory. Imports are checked first and appear atomically
    (temp file in the same directory + rename), so a reader never sees a half-written template
    and a failed import leaves the directory as it was."""

    def __init__(self, templates_dir: Path) -> None:
        self.dir = Path(templates_dir)

    def import_file(self, src: Path, image_id: str) -> ArchiveInfo:
        """Check `src` (InvalidInput if unsafe/corrupt) and copy it in as `<image_id>.<format>`.

        The copy is verified against the checked sha256 (the source could change in between).
        An existing template with this id is replaced (of any format).
        """
        self._check_id(image_id)
        src = Path(src)
        info = check_archive(src)
        self.dir.mkdir(parents=True, exist_ok=True)
        final = self.dir / f"{image_id}.{info.format}"
        fd, tmp_name = tempfile.mkstemp(prefix=f".{image_id}.", suffix=".part", dir=self.dir)
        tmp = Path(tmp_name)
        try:
            sha = hashlib.sha256()
            with os.fdopen(fd, "wb") as out, open(src, "rb") as inp:
                while chunk := inp.read(1 << 20):
                    sha.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            # Same bytes as the ones checked, or the source changed in between.
            if sha.hexdigest() != info.sha256:
                raise InvalidInput(f"{src} changed while it was being imported")
            os.chmod(tmp, 0o644)
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        # Another format of the same id would shadow or be shadowed by this one: drop it.
        for other in self._candidates(image_id):
            if other != final:
                other.unlink(missing_ok=True)
        return info

    def path(self, image_id: str) -> Path:
        """Path of the template archive; NotFound if there is none."""
        self._check_id(image_id)
        for p in self._candidates(image_id):
            return p
        raise NotFound(f"template {image_id} not found", image_id=image_id)

    def exists(self, image_id: str) -> bool:
        self._check_id(image_id)
        return any(True for _ in self._candidates(image_id))

    def delete(self, image_id: str) -> None:
        """Remove the template. Missing: no-op."""
        self._check_id(image_id)
        for p in self._candidates(image_id):
            p.unlink(missing_ok=True)

    def _candidates(self, image_id: str) -> list[Path]:
        return [p for s in _SUFFIXES if (p := self.dir / f"{image_id}.{s}").is_file()]

    @staticmethod
    def _check_id(image_id: str) -> None:
        # The id becomes a file name: no separators, no leading dot, no "..".
        if not _ID.match(image_id) or ".." in image_id:
            raise InvalidInput(f"invalid image id {image_id!r}")
