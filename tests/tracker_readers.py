"""Reading tracker logs back as their own tools would: TensorBoard, W&B offline, MLflow."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

BLOCK_BYTES = 32 * 1024  # W&B's transaction log uses LevelDB's log format
HEADER_BYTES = 7  # crc32 (4), length (2), record type (1)
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def tensorboard_scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def tensorboard_texts(log_dir: Path, tag: str) -> list[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"tensors": 0})
    acc.Reload()
    tags = [t for t in acc.Tags()["tensors"] if t.startswith(tag)]
    return [
        value.decode()
        for t in tags
        for event in acc.Tensors(t)
        for value in event.tensor_proto.string_val
    ]


def wandb_history(run_file: Path) -> list[dict]:
    """Every `run.log` row of an offline run's `run-*.wandb` file."""
    from wandb.proto import wandb_internal_pb2

    rows = []
    for data in _leveldb_records(run_file.read_bytes()):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(data)
        if record.WhichOneof("record_type") == "history":
            rows.append(
                {
                    item.key or "/".join(item.nested_key): json.loads(item.value_json)
                    for item in record.history.item
                }
            )
    return rows


def _leveldb_records(blob: bytes) -> list[bytes]:
    assert blob[:4] == b":W&B", "not a W&B transaction log"
    records, pending, offset = [], b"", 7  # 7: the file's own header
    while offset + HEADER_BYTES <= len(blob):
        left_in_block = BLOCK_BYTES - offset % BLOCK_BYTES
        if left_in_block < HEADER_BYTES:  # the block's tail is padding
            offset += left_in_block
            continue
        _crc, length, kind = struct.unpack("<IHB", blob[offset : offset + HEADER_BYTES])
        data = blob[offset + HEADER_BYTES : offset + HEADER_BYTES + length]
        offset += HEADER_BYTES + length
        if kind == FULL:
            records.append(data)
        elif kind in (FIRST, MIDDLE):
            pending += data
        elif kind == LAST:
            records.append(pending + data)
            pending = b""
    return records


def mlflow_history(tracking_uri: str, key: str) -> tuple[dict, list[tuple[int, float]]]:
    """The only run in the store: its params and one metric's (step, value) history."""
    from mlflow.tracking import MlflowClient

    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # as phalanx's writer asks for it
    client = MlflowClient(tracking_uri=tracking_uri)
    (experiment,) = [e for e in client.search_experiments() if e.name == "phalanx"]
    (run,) = client.search_runs([experiment.experiment_id])
    history = client.get_metric_history(run.info.run_id, key)
    return {"run": run, "client": client}, sorted((m.step, m.value) for m in history)
