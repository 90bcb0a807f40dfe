"""Templates (images): import, build, list, show, delete — the template library's use cases."""

from __future__ import annotations

import dataclasses
import logging
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from lxcloud.config import Settings
from lxcloud.core.caller import SYSTEM, Caller
from lxcloud.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from lxcloud.core.ids import is_id, new_id
from lxcloud.core.instance import ImageRef, Kind
from lxcloud.core.instance_types import MIN_LIMIT
from lxcloud.core.models import Image, Operation
from lxcloud.core.units import parse_size
from lxcloud.db.engine import Database
from lxcloud.db.tables import ImageRow, InstanceRow, ProjectRow, table
from lxcloud.node.protocol import NodeClient
from lxcloud.services.operations import Operations, Progress

log = logging.getLogger(__name__)

# read on every launch: built once, bound with parameters
_IMAGES = table(ImageRow)
_BY_ID = select(_IMAGES).where(_IMAGES.c.id == bindparam("ref"))
_BY_NAME = select(_IMAGES).where(_IMAGES.c.name == bindparam("ref"))
IMAGE_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{0,127}$")
MAX_DESCRIPTION = 255
BUILDERS = ("busybox", "debian")
ARCHES = ("amd64", "i386")


DEFAULT_MIN_MEMORY = 16 * 1024**2    # an image whose metadata does not say


def _to_model(r: Any) -> Image:
    return Image(id=r.id, name=r.name, os=r.os, release=r.release, architecture=r.architecture,
                 format=r.format, size=r.size, sha256=r.sha256, created=r.created, kind=Kind(r.kind),
                 halt_signal=r.halt_signal, init=r.init, project_id=r.project_id, public=r.public,
                 min_memory=r.min_memory or DEFAULT_MIN_MEMORY, description=r.description,
                 launch_projects=list(r.launch_projects or []))


@dataclass(frozen=True)
class BuildRequest:
    builder: str
    name: str | None = None
    release: str = "bookworm"
    arch: str = "amd64"
    cloud_init: bool = False


class ImageService:
    def __init__(self, settings: Settings, db: Database, ops: Operations, node: NodeClient) -> None:
        from lxcloud.images.store import TemplateStore

        self.settings = settings
        self.db = db
        self.ops = ops
        self.node = node
        self.store = TemplateStore(settings.templates_dir)

    # --- queries
    @staticmethod
    def _sees(caller: Caller, row: Any) -> bool:
        """Public images, the caller's project's own, and those shared with its project."""
        return (caller is SYSTEM or row.public or row.project_id == caller.project_id
                or caller.project_id in (row.launch_projects or ()))

    def get(self, ref: str, *, caller: Caller = SYSTEM, session: Session | None = None) -> Image:
        """By id or name; another project's private image is "not found". `session`: read in
        the caller's (read) transaction."""
        if session is None:
            with self.db.reader() as s:
                return self.get(ref, caller=caller, session=s)
        conn = session.connection()   # Core rows (read on every launch): no ORM objects
        row = conn.execute(_BY_ID, {"ref": ref}).first() if is_id(ref, "image") else None
        if row is None:
            row = conn.execute(_BY_NAME, {"ref": ref}).first()
        if row is None or not self._sees(caller, row):
            raise NotFound(f"image {ref!r} not found", resource="image", id=ref)
        return _to_model(row)

    def list(self, *, caller: Caller = SYSTEM) -> list[Image]:
        with self.db.reader() as s:
            return [_to_model(r) for r in s.scalars(select(ImageRow).order_by(ImageRow.created))
                    if self._sees(caller, r)]

    def template_path(self, image: Image) -> Path:
        return self.store.path(image.id)

    def ref(self, image: Image) -> ImageRef:
        """What a host needs of the image to boot an instance of it."""
        return ImageRef(id=image.id, template=str(self.store.path(image.id)), format=image.format,
                        halt_signal=image.halt_signal, init=image.init)

    # --- import
    def check_name(self, name: str) -> None:
        if not IMAGE_NAME_RE.match(name) or is_id(name):
            raise InvalidInput(f"image name {name!r} is not valid (letters, digits, . _ -; ≤ 128)")
        with self.db.reader() as s:
            if s.scalar(select(ImageRow.id).where(ImageRow.name == name)):
                raise Conflict(f"an image named {name!r} already exists", resource="image_name")

    def import_file(self, src: Path, name: str, meta: dict[str, Any] | None = None, *,
                    caller: Caller = SYSTEM, public: bool | None = None,
                    image_id: str | None = None) -> Image:
        """Checks the archive whole (hostile entries refused), stores it, records it.
        A failure at any step leaves neither a file nor a row behind. `image_id`: the id to
        give it (chosen earlier, e.g. by a record that names it); a new one otherwise."""
        meta = dict(meta or {})
        self.check_name(name)
        if len(str(meta.get("description") or "")) > MAX_DESCRIPTION:
            raise InvalidInput(f"an image description is at most {MAX_DESCRIPTION} characters")
        image_id = image_id or new_id("image")
        info = self.store.import_file(Path(src), image_id)
        try:
            row = ImageRow(
                id=image_id, name=name, format=info.format, size=info.size, sha256=info.sha256,
                os=str(meta.get("os") or info.os or ""),
                release=str(meta.get("release") or info.release or ""),
                architecture=str(meta.get("architecture") or info.architecture or ""),
                kind=str(Kind(meta.get("kind") or Kind.CONTAINER)),
                halt_signal=meta.get("halt_signal") or info.halt_signal,
                init=meta.get("init") or info.init,
                min_memory=_min_memory(meta.get("min_memory"), info.min_memory),
                description=str(meta["description"]) if meta.get("description") else None,
                project_id=caller.project_id or None,
                # an admin's images are for everyone; a member's stay in its project
                public=caller.is_admin if public is None else public)
            with self.db.session() as s:
                s.add(row)
            return _to_model(row)
        except Exception:
            self.store.delete(image_id)
            raise

    def import_path(self, location: str, name: str, *, description: str | None = None,
                    caller: Caller = SYSTEM) -> Image:
        """A template archive already on the controller, named by its absolute path (what the
        EC2 skin's RegisterImage takes for ImageLocation): admins only, a regular file, through
        the same hostile-archive checks as any import; the file itself is left as it is."""
        if not (caller is SYSTEM or caller.is_admin):
            raise Forbidden("only an admin may register an image from a file on the controller")
        path = Path(location)
        if not path.is_absolute() or "\0" in location:
            raise InvalidInput(f"image location {location!r} must be an absolute path of a "
                               "template archive on the controller")
        if not path.is_file():
            raise InvalidInput(f"image location {location!r} is not a file on the controller")
        return self.import_file(path, name, {"description": description} if description else None,
                                caller=caller)

    # --- build
    def build(self, req: BuildRequest, *, caller: Caller = SYSTEM) -> Operation:
        if req.builder not in BUILDERS:
            raise InvalidInput(f"unknown builder {req.builder!r} (known: {', '.join(BUILDERS)})")
        if req.arch not in ARCHES:
            raise InvalidInput(f"unsupported architecture {req.arch!r} (known: {', '.join(ARCHES)})")
        if req.builder == "debian" and not re.match(r"^[a-z]+$", req.release):
            raise InvalidInput(f"release {req.release!r} is not a Debian code name")
        name = req.name or (req.builder if req.builder == "busybox" else
                            f"debian-{req.release}-{req.arch}" + ("-cloud" if req.cloud_init else ""))
        self.check_name(name)
        target = f"image-build:{name}"
        op = self.ops.create("image_build", target, project_id=caller.project_id or None)

        def job(progress: Progress) -> dict[str, Any]:
            tmp = Path(tempfile.mkdtemp(prefix="build-", dir=self._tmp_dir()))
            try:
                out = tmp / "rootfs.tar.zst"
                if req.builder == "busybox":
                    from lxcloud.images.builders.busybox import build_busybox

                    progress(10, "building busybox root filesystem")
                    meta: dict[str, Any] = dict(build_busybox(out))
                    out = Path(meta.pop("path", out))
                else:
                    from lxcloud.images.builders.debian import build_debian

                    lines = [0]

                    def on_line(line: str) -> None:
                        lines[0] += 1
                        progress(min(90, 5 + lines[0] // 4), line)

                    info = build_debian(out, release=req.release, arch=req.arch,
                                        cloud_init=req.cloud_init, progress=on_line,
                                        cache_dir=self.settings.data_dir / "cache" / "debootstrap")
                    meta = dataclasses.asdict(info)
                    out = Path(meta.pop("path", out))
                progress(95, "importing into the template library")
                image = self.import_file(out, name, meta, caller=caller)
                return {"image_id": image.id, "image": image.name}
            finally:
                shutil.rmtree(tmp, ignore_errors=True)

        self.ops.submit(op, job)
        return op

    def _tmp_dir(self) -> Path:
        d = self.settings.data_dir / "tmp"
        d.mkdir(parents=True, exist_ok=True)
        return d

    def upload_dir(self) -> Path:
        return self._tmp_dir()

    def owned(self, ref: str, *, caller: Caller = SYSTEM) -> Image:
        """The image, if the caller may change it (its project's, or an admin): another
        project's image, even a public or shared one, is "not found" for changes."""
        image = self.get(ref, caller=caller)
        if caller is not SYSTEM and not caller.is_admin and image.project_id != caller.project_id:
            raise NotFound(f"image {ref!r} not found", resource="image", id=ref)
        return image

    # --- attributes
    def set_description(self, ref: str, description: str, *, caller: Caller = SYSTEM) -> Image:
        """At most 255 characters; an empty one clears it."""
        if len(description) > MAX_DESCRIPTION:
            raise InvalidInput(f"an image description is at most {MAX_DESCRIPTION} characters")
        image = self.owned(ref, caller=caller)
        with self.db.session() as s:
            row = s.get(ImageRow, image.id)
            if row is None:
                raise NotFound(f"image {ref!r} not found", resource="image", id=ref)
            row.description = description or None
            return _to_model(row)

    def change_launch_permission(self, ref: str, *, public: bool | None = None,
                                 grant: Sequence[str] = (), revoke: Sequence[str] = (),
                                 caller: Caller = SYSTEM) -> Image:
        """Who may see and launch the image besides its own project: everyone (`public`), and
        the projects granted (by id). Unknown projects are refused before anything changes;
        granting or revoking what is already so is not an error."""
        image = self.owned(ref, caller=caller)
        wanted = set(grant) | set(revoke)
        with self.db.session() as s:
            known = set(s.scalars(select(ProjectRow.id).where(ProjectRow.id.in_(wanted)))) \
                if wanted else set()
            unknown = sorted(wanted - known)
            if unknown:
                raise InvalidInput(f"no such project: {', '.join(unknown)}", resource="project")
            row = s.get(ImageRow, image.id)
            if row is None:
                raise NotFound(f"image {ref!r} not found", resource="image", id=ref)
            shared = [p for p in row.launch_projects or () if p not in revoke]
            shared += [p for p in dict.fromkeys(grant)
                       if p not in shared and p != row.project_id and p not in revoke]
            row.launch_projects = shared
            if public is not None:
                row.public = public
            return _to_model(row)

    # --- delete
    def delete(self, ref: str, *, caller: Caller = SYSTEM) -> None:
        image = self.owned(ref, caller=caller)
        with self.db.session() as s:
            users = s.scalar(select(func.count()).select_from(InstanceRow).where(
                InstanceRow.image_id == image.id, InstanceRow.state != "terminated"))
            if users:
                raise Conflict(f"image {image.name!r} is used by {users} instance(s)",
                               image=image.id, resource="image_in_use")
            row = s.get(ImageRow, image.id)
            if row is not None:
                s.delete(row)
                # terminated instances keep their history; they no longer point at a live image
        try:
            self.node.delete_base(image.id)
        except Exception:
            log.exception("could not delete base of %s", image.id)
        self.store.delete(image.id)


def _min_memory(given: object, found: int | None) -> int:
    """The image's least memory: its metadata's (a size), else what its init needs."""
    if given is not None and given != "":
        n = parse_size(given if isinstance(given, int) else str(given), "min_memory")
        if n < MIN_LIMIT:
            raise InvalidInput(f"min_memory must be at least {MIN_LIMIT >> 20}MiB")
        return n
    return found or DEFAULT_MIN_MEMORY
