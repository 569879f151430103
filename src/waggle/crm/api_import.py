"""HTTP routes of CRM import and export.

``POST /api/v1/imports/{resource}`` takes a multipart ``file`` (CSV or XLSX)
and an optional ``mapping`` (YAML); runs and their rejects can be read and
replayed; ``GET /api/v1/exports/{resource}`` streams a file in the same
layout.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from typing import IO, Annotated, Any

from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

from waggle.apikit import ActorDep, SessionDep
from waggle.crm.exporting import export_records
from waggle.crm.importing import (
    get_run,
    import_file,
    list_rejects,
    list_runs,
    replay_rejects,
    summarize,
    write_rejects,
)
from waggle.crm.mapping import ColumnMapping, load_mapping
from waggle.crm.models import ImportReject

TAG = "crm"
SPOOL_BYTES = 8 * 1024 * 1024
STREAM_CHUNK = 64 * 1024
MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}

UploadedFile = Annotated[UploadFile, File(description="CSV (UTF-8 or GBK) or XLSX")]
FormatField = Annotated[str | None, Form(alias="format")]


def router() -> APIRouter:
    """Return the import and export routes."""
    routes = APIRouter(prefix="/api/v1", tags=[TAG])
    _import_routes(routes)
    _reject_routes(routes)
    _export_routes(routes)
    return routes


def _import_routes(routes: APIRouter) -> None:
    @routes.post("/imports/{resource}", status_code=201)
    def create_import(
        resource: str,
        session: SessionDep,
        actor: ActorDep,
        file: UploadedFile,
        mapping: Annotated[UploadFile | None, File()] = None,
        file_format: FormatField = None,
    ) -> dict[str, Any]:
        """Import a file; the answer reconciles rows read with their outcomes."""
        column_mapping = ColumnMapping()
        if mapping is not None:
            origin = mapping.filename or "mapping"
            column_mapping = load_mapping(mapping.file.read(), origin=origin)
        summary = import_file(
            session,
            actor,
            resource,
            file.file.read(),
            filename=file.filename or f"{resource}.csv",
            file_format=file_format,
            mapping=column_mapping,
        )
        return summary.as_dict()

    @routes.get("/imports")
    def runs(
        session: SessionDep, actor: ActorDep, limit: int = 50
    ) -> list[dict[str, Any]]:
        """List the latest runs of the resources the caller may import."""
        return [
            summarize(run).as_dict() for run in list_runs(session, actor, limit=limit)
        ]

    @routes.get("/imports/{run_id}")
    def read_run(run_id: int, session: SessionDep, actor: ActorDep) -> dict[str, Any]:
        return summarize(get_run(session, actor, run_id)).as_dict()

    @routes.post("/imports/{run_id}/replay", status_code=201)
    def replay(
        run_id: int,
        session: SessionDep,
        actor: ActorDep,
        file: Annotated[UploadFile | None, File()] = None,
        file_format: FormatField = None,
    ) -> dict[str, Any]:
        """Retry a run's open rejects, as stored or from a corrected ``file``."""
        summary = replay_rejects(
            session,
            actor,
            run_id,
            data=None if file is None else file.file.read(),
            filename=None if file is None else file.filename,
            file_format=file_format,
        )
        return summary.as_dict()


def _reject_routes(routes: APIRouter) -> None:
    @routes.get("/imports/{run_id}/rejects", response_model=None)
    def rejects(
        run_id: int,
        session: SessionDep,
        actor: ActorDep,
        only_open: Annotated[bool, Query(alias="open")] = False,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
        offset: Annotated[int, Query(ge=0)] = 0,
        file_format: Annotated[str | None, Query(alias="format")] = None,
    ) -> Any:
        """Return a run's rejected rows (JSON), or ``format=csv|xlsx`` to fix them."""
        if file_format is not None:
            spool = _spool()
            write_rejects(session, actor, run_id, spool, file_format=file_format)
            return _stream(spool, f"rejects-{run_id}.{file_format}", file_format)
        items = list_rejects(
            session, actor, run_id, only_open=only_open, limit=limit, offset=offset
        )
        return {"run_id": run_id, "items": [_reject(item) for item in items]}


def _reject(reject: ImportReject) -> dict[str, Any]:
    return {
        "row_number": reject.row_number,
        "field": reject.field,
        "code": reject.code,
        "reason": reject.reason,
        "raw": reject.raw,
        "replayed_at": reject.replayed_at,
    }


def _export_routes(routes: APIRouter) -> None:
    @routes.get("/exports/{resource}", response_model=None)
    def export(
        resource: str,
        session: SessionDep,
        actor: ActorDep,
        file_format: Annotated[str, Query(alias="format")] = "csv",
        encoding: str = "utf-8-sig",
    ) -> StreamingResponse:
        """Download the records the caller may see, in the import layout."""
        spool = _spool()
        export_records(
            session, actor, resource, spool, file_format=file_format, encoding=encoding
        )
        return _stream(spool, f"{resource}.{file_format}", file_format)


def _spool() -> IO[bytes]:
    # The file is built while the request's session is open (the export's
    # audit row commits with it), then streamed from disk or memory.
    return tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)


def _stream(spool: IO[bytes], filename: str, file_format: str) -> StreamingResponse:
    spool.seek(0)

    def chunks() -> Iterator[bytes]:
        while chunk := spool.read(STREAM_CHUNK):
            yield chunk

    return StreamingResponse(
        chunks(),
        media_type=MEDIA_TYPES.get(file_format, "application/octet-stream"),
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        background=BackgroundTask(spool.close),
    )
