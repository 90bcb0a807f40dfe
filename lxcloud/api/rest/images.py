"""REST: /api/v1/images (the template library)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from fastapi import APIRouter, Depends, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from lxcloud.api.rest.deps import caller, cloud
from lxcloud.api.rest.schemas import ImageBuildIn, ImageFromIn, ImageOut, OperationOut
from lxcloud.core.caller import Caller
from lxcloud.core.errors import InvalidInput
from lxcloud.services.cloud import Cloud
from lxcloud.services.images import BuildRequest

router = APIRouter(prefix="/api/v1/images", tags=["images"])
MAX_UPLOAD = 16 * 1024**3


@router.get("", response_model=list[ImageOut])
def list_images(c: Cloud = Depends(cloud), who: Caller = Depends(caller)) -> list[ImageOut]:
    return [ImageOut.of(i) for i in c.images.list(caller=who)]


@router.get("/{ref}", response_model=ImageOut)
def get_image(ref: str, c: Cloud = Depends(cloud), who: Caller = Depends(caller)) -> ImageOut:
    return ImageOut.of(c.images.get(ref, caller=who))


@router.post("", status_code=201, response_model=ImageOut,
             openapi_extra={"requestBody": {"content": {"application/octet-stream": {}}}})
async def import_image(request: Request, name: str = Query(..., min_length=1),
                       os_name: str | None = Query(None, alias="os"),
                       release: str | None = Query(None),
                       architecture: str | None = Query(None),
                       public: bool | None = Query(None, description="visible to every project"),
                       min_memory: str | None = Query(
                           None, description="the least memory the image boots in (e.g. 128MiB); "
                                             "by default what its init needs"),
                       c: Cloud = Depends(cloud), who: Caller = Depends(caller)) -> ImageOut:
    """Upload a root filesystem tarball as the raw request body (.tar, .tar.gz, .tar.xz, .tar.zst)."""
    c.images.check_name(name)   # refused before a byte of a large upload is stored
    tmp = await receive_upload(request, c)
    try:
        meta = {"os": os_name, "release": release, "architecture": architecture,
                "min_memory": min_memory}
        image = await run_in_threadpool(lambda: c.images.import_file(
            Path(tmp), name, {k: v for k, v in meta.items() if v}, caller=who, public=public))
        return ImageOut.of(image)
    finally:
        Path(tmp).unlink(missing_ok=True)


async def receive_upload(request: Request, c: Cloud) -> Path:
    """The raw request body in a file of the upload dir (the caller removes it); InvalidInput
    for an empty one or one larger than 16 GiB."""
    fd, name = tempfile.mkstemp(prefix="upload-", dir=c.images.upload_dir())
    tmp = Path(name)
    try:
        size = 0
        with os.fdopen(fd, "wb") as f:
            async for chunk in request.stream():
                size += len(chunk)
                if size > MAX_UPLOAD:
                    raise InvalidInput("upload larger than 16 GiB")
                f.write(chunk)
        if size == 0:
            raise InvalidInput("empty upload: send the archive as the request body")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


@router.post("/build", status_code=202, response_model=OperationOut)
def build_image(body: ImageBuildIn, c: Cloud = Depends(cloud), who: Caller = Depends(caller)) -> OperationOut:
    op = c.images.build(BuildRequest(builder=body.builder, name=body.name, release=body.release,
                                     arch=body.arch, cloud_init=body.cloud_init), caller=who)
    return OperationOut.of(op)


@router.post("/from-instance", status_code=202, response_model=OperationOut)
async def image_from_instance(request: Request, body: ImageFromIn,
                              wait: float = Query(0, ge=0, le=3600),
                              c: Cloud = Depends(cloud), who: Caller = Depends(caller)) -> Response:
    """A template of an instance (stopped, running through a snapshot taken for the purpose,
    or one of its snapshots); the operation's result names the image (`image_id`)."""
    from lxcloud.api.rest.storage import op_answer

    op = await run_in_threadpool(lambda: c.copies.image_from(
        body.instance, body.name, snapshot=body.snapshot, description=body.description,
        caller=who))
    return await op_answer(request, c, who, op, wait)


@router.delete("/{ref}", status_code=204)
def delete_image(ref: str, c: Cloud = Depends(cloud), who: Caller = Depends(caller)) -> Response:
    c.images.delete(ref, caller=who)
    return Response(status_code=204)
