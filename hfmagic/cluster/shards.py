"""``%evaluate --cluster``: a variant's batches in contiguous shards, one Ray task each.

The kernel puts the shards' outputs back in data order and scores them itself, so the metrics,
intervals and flips are the ones a single-process run computes from the same outputs.
"""

from __future__ import annotations

import socket
import time

from hfmagic.cluster.connect import Cluster, error_line, worker_env
from hfmagic.cluster.transfer import folder_digest, localize, materialize, variant_folders
from hfmagic.measure.runner import Runner
from hfmagic.measure.spec import variant_from_spec, variant_spec
from hfmagic.tasks import ensure


def _evaluate_shard(spec: dict, folders: dict[str, str], holders: dict[str, list], feeds: list, threads: int) -> dict:
    """Run one shard of a variant's batches on a node: each batch's named outputs, seconds."""
    import ray


    here = {role: materialize(digest, holders.get(digest))[0] for role, digest in folders.items()}
    local = localize(spec, here)
    ensure(local.get("task_origin"))
    variant = variant_from_spec(local)
    t0 = time.perf_counter()
    runner = Runner(variant, threads)
    load_s = time.perf_counter() - t0
    outputs, seconds = [], 0.0
    try:
        for feed in feeds:
            t0 = time.perf_counter()
            outputs.append(runner.run(feed))
            seconds += time.perf_counter() - t0
    finally:
        runner.close()
    return {"outputs": outputs, "seconds": seconds, "load_s": load_s,
            "node_id": ray.get_runtime_context().get_node_id(), "host": socket.gethostname()}


def evaluate_shards(cluster: Cluster, on: str | None, variant, batches: list, threads: int) -> dict:
    """Every batch's named outputs (in order) from shards run as Ray tasks; seconds in the model
    (summed over shards), the slowest shard's loading, the shards and the nodes they ran on."""
    import ray

    slots, wanted = cluster.shard_slots(on, threads)
    count = max(1, min(slots, len(batches)))
    spec = variant_spec(variant)
    paths = variant_folders(spec)
    folders = {role: folder_digest(path) for role, path in paths.items()}
    # put once per folder (per connection); a node that holds the folder already never fetches it
    holders = cluster.refs({folders[role]: path for role, path in paths.items()})
    gpus = wanted.get("GPU", 0)
    task = ray.remote(max_retries=0)(_evaluate_shard).options(
        num_cpus=threads, num_gpus=gpus, resources={k: v for k, v in wanted.items() if k != "GPU"},
        runtime_env=worker_env(threads), scheduling_strategy="SPREAD")
    bounds = [round(i * len(batches) / count) for i in range(count + 1)]
    refs = [task.remote(spec, folders, holders, [feed for _, feed in batches[a:b]], threads)
            for a, b in zip(bounds, bounds[1:]) if b > a]
    try:
        done = ray.get(refs)
    except KeyboardInterrupt:
        for ref in refs:
            ray.cancel(ref, force=True)
        raise
    except ray.exceptions.RayError as exc:
        for ref in refs:
            ray.cancel(ref, force=True)
        raise RuntimeError(f"a shard failed on the cluster: {error_line(exc)}") from None
    return {"outputs": [o for d in done for o in d["outputs"]], "seconds": sum(d["seconds"] for d in done),
            "load_s": max(d["load_s"] for d in done), "shards": len(done),
            "nodes": sorted({d["node_id"][:12] for d in done}),
            "hosts": sorted({d["host"] for d in done})}
