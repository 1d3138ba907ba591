"""Bulk inference: a planning step, one job per shard, then one job that seals the output folder.

The planning step reads every input on a worker (not the submitting host), cuts it into shards and
adds the shard jobs to the pipeline (`ctx.add_shards`, once, fenced by its attempt).

Exactly once, by construction:
- a shard attempt writes its own file (`part-00003.attempt-2.jsonl`), fsyncs it, reads it back and
  checks it holds exactly the shard's ids, in order;
- it then records that file as the shard's output in a fenced transaction: only the attempt that is
  still current can, so a stale or duplicate attempt's file is never the one used;
- the finishing job checks every shard's recorded file (records, checksum), removes the files of
  attempts that lost, and writes manifest.json (temp file, fsync, atomic rename), then _SUCCESS.
"""

from __future__ import annotations

import errno
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bertq import sharding, store
from bertq.bulk import InferSpec, plan_shards
from bertq.db.models import utcnow
from bertq.errors import BertqError
from bertq.infer_tasks import get_infer_task
from bertq.result_cache import ResultCache, model_digest, store_decision, stored_decision, text_key
from bertq.safety import check_output_folder
from bertq.tasks import DEFAULT_TOKEN_BUDGET
from bertq.worker import faults
from bertq.worker.context import ShardRecord, memory_mb, reset_peak_memory
from bertq.worker.loading import best_device, device_name, gpu_capability, half_precision
from bertq.worker.predict import agreement, cpu_has_fast_bf16, load_predictor
from bertq.worker.runner import JobContext, size_and_digest

DELTA_PREFIX = "delta-"
"""`--changed-only`: a shard attempt's delta file is its part's name with this before it."""
PRECISION_SAMPLE = 256
"""Records of a shard run in both fp32 and bf16 to decide whether bf16 is accurate enough."""
REQUIRED_AGREEMENT = 0.995
REQUIRED_COSINE = 0.999


def _predictor_options(spec: InferSpec) -> dict[str, Any]:
    return dict(
        max_length=spec.max_length,
        all_scores=spec.all_scores,
        normalize=spec.normalize,
        labels=spec.labels,
        question=spec.question,
        batch_invariant=True,  # a cached result and a computed one are the same bytes
    )


def choose_precision(
    spec: InferSpec, location: str, device: str, texts: list[sharding.Text], ctx: JobContext
) -> tuple[str, dict[str, Any]]:
    """`auto`: bf16 where the hardware is fast at it and its answers agree with fp32's on a sample."""
    if spec.precision != "auto":
        return spec.precision, {"chosen": spec.precision, "reason": "requested"}
    candidate_precision = "bf16"
    if device == "cuda":  # the GPU's native 16-bit format, checked against fp32 like the CPU's bf16
        candidate_precision = half_precision(gpu_capability())
    elif not cpu_has_fast_bf16():
        return "fp32", {"chosen": "fp32", "reason": "this CPU has no fast bf16 (AMX/AVX512-BF16)"}
    sample = texts[:PRECISION_SAMPLE]
    reference = load_predictor(
        location, spec.task, device=device, precision="fp32", **_predictor_options(spec)
    ).predict(sample)
    candidate = load_predictor(
        location, spec.task, device=device, precision=candidate_precision, **_predictor_options(spec)
    ).predict(sample)
    score = agreement(spec.task, reference, candidate)
    needed = REQUIRED_COSINE if get_infer_task(spec.task).vectors else REQUIRED_AGREEMENT
    chosen = candidate_precision if score >= needed else "fp32"
    ctx.log.info(
        "precision check on %d records: %s agreement %.4f (needs %.3f): %s",
        len(sample),
        candidate_precision,
        score,
        needed,
        chosen,
    )
    return chosen, {
        "chosen": chosen,
        "reason": "accuracy check",
        f"{candidate_precision}_agreement": score,
        "sample": len(sample),
    }


def parquet_schema(task: str, results: list[dict[str, Any]]) -> Any:
    """The output's Arrow schema: `id`, then the task's columns (`bertq.infer_tasks`), the same for
    every shard whatever its values (an empty shard, a shard with no entities)."""
    import pyarrow as pa

    entity = pa.struct(
        [
            ("text", pa.string()),
            ("label", pa.string()),
            ("start", pa.int32()),
            ("end", pa.int32()),
            ("score", pa.float64()),
        ]
    )
    types = {
        "string": pa.string(),
        "float64": pa.float64(),
        "int32": pa.int32(),
        "list<string>": pa.list_(pa.string()),
        "list<float32>": pa.list_(pa.float32()),
        "list<float64>": pa.list_(pa.float64()),
        "map<string,float64>": pa.map_(pa.string(), pa.float64()),
        "entities": pa.list_(entity),
    }
    infer_task = get_infer_task(task)
    present = set().union(*results) if results else set()
    columns = [*infer_task.columns, *((n, t) for n, t in infer_task.optional_columns if n in present)]
    return pa.schema([("id", pa.string()), *((name, types[kind]) for name, kind in columns)])


def _write_records(path: Path, fmt: str, ids: list[str], results: list[dict[str, Any]], task: str) -> None:
    rows = [{"id": record_id, **result} for record_id, result in zip(ids, results)]
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = parquet_schema(task, results)
        write_atomically(path, lambda temporary: pq.write_table(pa.Table.from_pylist(rows, schema=schema), temporary))
        return

    def write_jsonl(temporary: Path) -> None:
        with open(temporary, "w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")

    write_atomically(path, write_jsonl)


def write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """`write` a temporary file beside `path`, fsync it, then rename it to `path`: a reader finds the
    whole file under its final name or nothing. If the disk fills up midway the temporary file is
    removed and the error names `path`."""
    temporary = path.with_name(f".{path.name}.partial")
    try:
        write(temporary)
        with open(temporary, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except BaseException as error:
        temporary.unlink(missing_ok=True)
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise OSError(error.errno, error.strerror, str(path)) from error
        raise


def read_output_ids(path: Path, fmt: str) -> list[str]:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return [str(v) for v in pq.read_table(path, columns=["id"]).column("id").to_pylist()]
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line)["id"] for line in handle if line.strip()]


def run_infer_plan(spec_values: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    spec = InferSpec.from_dict(spec_values)
    if spec.parent_job_id is None:
        raise BertqError("an infer_plan job needs parent_job_id (set when the bulk job is submitted)")
    started = time.monotonic()
    reset_peak_memory()
    at_start = memory_mb("VmRSS")
    shards = plan_shards(spec)
    records = sum(s.records for s in shards)
    ctx.log.info("planned %d records in %d shards in %.1fs", records, len(shards), time.monotonic() - started)
    ctx.add_shards(spec.parent_job_id, shards)
    ctx.metrics({"peak_rss_mb": round(memory_mb("VmHWM"), 1), "rss_at_start_mb": round(at_start, 1)})
    return {"records": records, "shards": len(shards), "inputs": len(spec.inputs)}


def run_infer_shard(spec_values: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    spec = InferSpec.from_dict(spec_values)
    if spec.shard is None or spec.parent_job_id is None:
        raise BertqError("an infer_shard job needs its shard and parent_job_id (set when the bulk job is planned)")
    shard = sharding.Shard(**spec.shard)
    parent = spec.parent_job_id
    reset_peak_memory()
    at_start = memory_mb("VmRSS")
    device = best_device() if spec.device in ("cuda", "auto") else "cpu"  # auto: what this worker has
    # A job's checkpoint through the context: from the artifact store, its sha256 is checked.
    location = (ctx.checkpoint_of(spec.model_job_id) if spec.model_job_id else None) or spec.model_location
    if location is None:
        raise BertqError(f"job {spec.model_job_id} recorded no checkpoint to run")

    # The input is read as planned, or not at all: read_shard checks size and checksum first.
    records = list(
        sharding.read_shard(
            shard,
            text_column=spec.text_column,
            id_column=spec.id_column,
            on_bad_line=spec.on_bad_line,
            pair_column=spec.pair_column,
        )
    )
    ids = [record_id for record_id, _ in records]
    texts = [text for _, text in records]
    if len(ids) != shard.records:
        raise BertqError(f"shard {shard.index} of {shard.path} has {len(ids)} records, planned {shard.records}")
    weights = model_digest(location) if spec.cache else ""
    earlier = (
        stored_decision(ctx.settings, spec, weights, device_name(device))
        if spec.cache and spec.precision == "auto"
        else None
    )
    if earlier is not None:  # the precision every earlier shard of this model ran (and cached) in
        precision, decision = str(earlier["chosen"]), {**earlier, "reused": True}
    else:
        precision, decision = choose_precision(spec, location, device, texts, ctx)
        if spec.cache and spec.precision == "auto":
            store_decision(ctx.settings, spec, weights, device_name(device), decision)
    predictor = load_predictor(location, spec.task, device=device, precision=precision, **_predictor_options(spec))
    cache = ResultCache.open(ctx.settings, spec, weights, precision) if spec.cache else None
    hits = cache.lookup(texts) if cache else {}
    todo = [i for i in range(len(texts)) if i not in hits]
    if cache:
        ctx.log.info("result cache %s: %d of %d records found", cache.key[:12], len(hits), len(texts))

    done = 0
    started = time.monotonic()

    def on_batch(count: int) -> None:
        nonlocal done
        faults.slow_step()
        done += count
        rate = done / max(time.monotonic() - started, 1e-6)
        ctx.progress(
            done / max(len(texts), 1),
            rows=done,
            total=len(texts),
            rate_per_s=round(rate, 1),
            eta_seconds=round((len(texts) - done) / rate) if rate else None,
            precision=precision,
        )
        ctx.shard_progress(parent, shard.index, done)

    if hits:  # cached records count as done at once
        on_batch(len(hits))
    computed = (
        predictor.predict(
            [texts[i] for i in todo], token_budget=spec.token_budget or DEFAULT_TOKEN_BUDGET[device], on_batch=on_batch
        )
        if todo
        else []
    )
    fresh: dict[int, str] = {}
    results = computed
    if cache is not None:
        # A result is written as its JSON text, from the cache or just computed: the same bytes either way.
        fresh = dict(zip(todo, (json.dumps(result, ensure_ascii=False) for result in computed)))
        results = [json.loads(hits[i]) if i in hits else json.loads(fresh[i]) for i in range(len(texts))]

    # This attempt's own file, checked before it is offered as the shard's output.
    name = f"part-{shard.index:05d}.attempt-{ctx.attempt}.{spec.format}"
    stored = store.is_url(spec.output)
    if stored:  # written here, checked, then uploaded under its attempt's name; the commit names the URL
        folder = ctx.workdir / "output"
    else:
        folder = check_output_folder(spec.output, ctx.settings)  # checked again: it may have become a symlink
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    _write_records(path, spec.format, ids, results, spec.task)
    if read_output_ids(path, spec.format) != ids:
        raise BertqError(f"{path}: the written ids differ from the shard's ids; the file was not committed")
    if spec.changed_only:  # beside it, this attempt's delta: the records the cache had not seen
        delta = folder / f"{DELTA_PREFIX}{name}"
        _write_records(delta, spec.format, [ids[i] for i in todo], [results[i] for i in todo], spec.task)
        if stored:
            store.upload(delta, store.join(spec.output, delta.name))
    digest = size_and_digest(path)[1]
    where = str(path)
    if stored:
        where = store.join(spec.output, name)
        store.upload(path, where)
    ctx.commit_shard_output(parent, shard.index, path=where, sha256=digest, rows=len(ids))
    if cache is not None:  # after the commit: what is cached was committed by this attempt
        cache.add(
            {text_key(texts[i]): fresh[i] for i in todo},
            f"part-{ctx.job_id}-{shard.index:05d}-a{ctx.attempt}.parquet",
        )
    seconds = max(time.monotonic() - started, 1e-6)
    ctx.metrics(
        {
            "tokens": float(predictor.tokens),
            "padded_tokens": float(predictor.padded_tokens),
            "peak_rss_mb": round(memory_mb("VmHWM"), 1),
            "rss_at_start_mb": round(at_start, 1),
            **({"cache_hits": float(len(hits)), "cache_misses": float(len(todo))} if cache else {}),
        }
    )
    return {
        "records": len(ids),
        "output": str(path),
        "precision": decision,
        "rate_per_s": round(len(ids) / seconds, 1),
        "seconds": round(seconds, 3),
        "padding_efficiency": round(predictor.tokens / max(predictor.padded_tokens, 1), 4),
    }


def run_infer(spec_values: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Every shard succeeded: check their committed files, drop the losers', seal the folder."""
    spec = InferSpec.from_dict(spec_values)
    if store.is_url(spec.output):
        return _seal_stored_output(spec, ctx)
    folder = check_output_folder(spec.output, ctx.settings)  # checked again: it may have become a symlink
    shards = ctx.shards()
    files = []
    for shard in shards:
        if not shard.output_path:
            raise BertqError(f"shard {shard.index} finished without a committed output file")
        path = Path(shard.output_path)
        if not path.is_file() or size_and_digest(path)[1] != shard.output_sha256:
            raise BertqError(
                f"{path}: the committed output of shard {shard.index} is missing or changed since its commit"
            )
        files.append(_manifest_entry(shard, path.name))
    committed = {f["path"] for f in files}
    committed |= {DELTA_PREFIX + name for name in committed}
    for pattern in (f"part-*.attempt-*.{spec.format}", f"{DELTA_PREFIX}part-*.attempt-*.{spec.format}"):
        for leftover in folder.glob(pattern):
            if leftover.name not in committed:  # an attempt that lost (killed, superseded): not part of the output
                leftover.unlink()
    manifest = _manifest(spec, ctx, files)
    if spec.changed_only:
        manifest["delta"] = [_delta_entry(folder / f"{DELTA_PREFIX}{f['path']}", spec.format, f) for f in files]
        manifest["delta_records"] = sum(d["records"] for d in manifest["delta"])
    _atomic_write(folder / "manifest.json", json.dumps(manifest, indent=2))
    _atomic_write(folder / "_SUCCESS", "")
    ctx.artifact("output", folder / "manifest.json")
    ctx.metrics({"records": float(manifest["records"]), "files": float(len(files))})
    return {"output": str(folder), "records": manifest["records"], "files": len(files)}


def _manifest_entry(shard: ShardRecord, name: str) -> dict[str, Any]:
    """One committed part, as the manifest lists it."""
    return {
        "path": name,
        "records": shard.records,
        "sha256": shard.output_sha256,
        "shard": shard.index,
        "input": shard.path,
        "input_range": [shard.start, shard.end],
        "first_line": shard.first_line,
    }


def _delta_entry(path: Path, fmt: str, part: dict[str, Any]) -> dict[str, Any]:
    """A committed part's delta file, as the manifest lists it."""
    if not path.is_file():
        raise BertqError(f"{path}: the delta file of shard {part['shard']} is missing")
    return {
        "path": f"{DELTA_PREFIX}{part['path']}",
        "records": len(read_output_ids(path, fmt)),
        "sha256": size_and_digest(path)[1],
        "shard": part["shard"],
    }


def _manifest(spec: InferSpec, ctx: JobContext, files: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "job_id": ctx.job_id,
        "model": spec.model,
        "model_location": spec.model_location,
        "task": spec.task,
        "format": spec.format,
        "records": sum(f["records"] for f in files),
        "files": files,
        "inputs": spec.inputs,
        "created_at": utcnow().isoformat(timespec="seconds") + "Z",
    }


def _seal_stored_output(spec: InferSpec, ctx: JobContext) -> dict[str, Any]:
    """The same commit as a local folder's, on a store without rename: every shard's committed part
    (named by its attempt) is checked to exist, parts of attempts that lost are deleted, then the
    manifest naming the committed parts and their sha256 is written, and `_SUCCESS` last."""
    fs, prefix = store.filesystem(spec.output)
    files = []
    for shard in ctx.shards():
        if not shard.output_path or not store.exists(shard.output_path):
            raise BertqError(f"shard {shard.index} has no committed output in {spec.output}")
        files.append(_manifest_entry(shard, shard.output_path.rsplit("/", 1)[-1]))
    committed = {f["path"] for f in files}
    committed |= {DELTA_PREFIX + name for name in committed}
    for pattern in (f"part-*.attempt-*.{spec.format}", f"{DELTA_PREFIX}part-*.attempt-*.{spec.format}"):
        for leftover in fs.glob(f"{prefix.rstrip('/')}/{pattern}"):
            if leftover.rsplit("/", 1)[-1] not in committed:  # an attempt that lost: not part of the output
                fs.rm_file(leftover)
    manifest = _manifest(spec, ctx, files)
    if spec.changed_only:
        manifest["delta"] = [
            _delta_entry(
                store.cache(ctx.settings.home).data(store.join(spec.output, DELTA_PREFIX + f["path"])), spec.format, f
            )
            for f in files
        ]
        manifest["delta_records"] = sum(d["records"] for d in manifest["delta"])
    local = ctx.workdir / "manifest.json"
    local.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    store.upload(local, store.join(spec.output, "manifest.json"))
    success = ctx.workdir / "_SUCCESS"
    success.write_text("")
    store.upload(success, store.join(spec.output, "_SUCCESS"))  # last: readers wait for it
    ctx.artifact("output", local)
    ctx.metrics({"records": float(manifest["records"]), "files": float(len(files))})
    return {"output": spec.output, "records": manifest["records"], "files": len(files)}


def _atomic_write(path: Path, text: str) -> None:
    write_atomically(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))
