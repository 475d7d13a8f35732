"""Readable tables, JSON files and flat scalar dicts from an evaluation result (evaluator.DPSEvaluator.summarize)."""

from __future__ import annotations

import json
import math
from pathlib import Path

_GROUPS = (("All", "all"), ("Things", "things"), ("Stuff", "stuff"))
_DEPTH_COLUMNS = (("AbsRel", "abs_rel", 4), ("SqRel", "sq_rel", 4), ("SqRel(KITTI)", "sq_rel_kitti", 4),
                  ("RMSE", "rmse", 3), ("RMSE_log", "rmse_log", 4), ("SILog", "silog", 2),
                  ("d<1.25", "delta1", 4), ("d<1.25^2", "delta2", 4), ("d<1.25^3", "delta3", 4))


def _fmt(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [row[0].ljust(widths[0])] + [cell.rjust(width) for cell, width in zip(row[1:], widths[1:])]
        lines.append("  ".join(cells))
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def _lambda_keys(result: dict) -> list[str]:
    return [f"{lam:g}" for lam in result.get("settings", {}).get("lambdas", [])]


def panoptic_table(result: dict) -> str:
    """Rows All / Things / Stuff; columns PQ SQ RQ, DPQ at each lambda and their mean (all in %)."""
    lambda_keys = _lambda_keys(result) if result.get("dpq") else []
    header = ["", "PQ", "SQ", "RQ"] + [f"DPQ@{key}" for key in lambda_keys] + (["DPQ"] if lambda_keys else [])
    rows = []
    for label, group in _GROUPS:
        pq = result["pq"][group]
        row = [label, _fmt(pq["pq"]), _fmt(pq["sq"]), _fmt(pq["rq"])]
        row += [_fmt(result["dpq"][key][group]["pq"]) for key in lambda_keys]
        if lambda_keys:
            row.append(_fmt(result["dpq"]["mean"][group]))
        rows.append(row)
    return _table(header, rows)


def per_class_table(result: dict) -> str:
    """One row per class: PQ SQ RQ TP FP FN (and DPQ per lambda when depth was scored)."""
    lambda_keys = _lambda_keys(result) if result.get("dpq") else []
    header = ["class", "kind", "PQ", "SQ", "RQ", "TP", "FP", "FN"] + [f"DPQ@{key}" for key in lambda_keys]
    rows = []
    for entry in result["pq"]["per_class"]:
        row = [entry["name"], "thing" if entry["is_thing"] else "stuff"]
        if entry["present"]:
            row += [_fmt(entry["pq"]), _fmt(entry["sq"]), _fmt(entry["rq"])]
        else:
            row += ["-", "-", "-"]
        row += [str(entry["tp"]), str(entry["fp"]), str(entry["fn"])]
        row += [_fmt(entry.get("dpq", {}).get(key)) if entry["present"] else "-" for key in lambda_keys]
        rows.append(row)
    return _table(header, rows)


def dvpq_table(result: dict) -> str | None:
    """Rows: VPQ (no depth) and DVPQ at each lambda; columns: window length k (all-class PQ in %)."""
    dvpq = result.get("dvpq")
    if not dvpq:
        return None
    ks = [str(k) for k in result["settings"]["dvpq_ks"]]
    header = ["", *[f"k={k}" for k in ks]]

    def cell(entry: dict | None) -> str:
        return _fmt(entry["all"]["pq"]) if entry else "-"

    rows = [["VPQ", *[cell(dvpq[k]["vpq"]) for k in ks]]]
    for key in _lambda_keys(result):
        rows.append([f"DVPQ@{key}", *[cell(dvpq[k].get(key)) for k in ks]])
    if result.get("dpq"):
        rows.append(["DVPQ (mean over lambda)", *[_fmt((dvpq[k].get("mean") or {}).get("all")) for k in ks]])
    text = "Video PQ over windows of k frames (all classes, %)\n" + _table(header, rows)
    if dvpq.get("mean"):
        mean = dvpq["mean"]
        text += (f"\nDVPQ (mean over k and lambda): all {_fmt(mean['all'])}, things {_fmt(mean['things'])}, "
                 f"stuff {_fmt(mean['stuff'])}")
    return text


def depth_table(result: dict) -> str | None:
    depth = result.get("depth")
    if not depth:
        return None
    header = [f"depth ({depth['reduction']})", *[name for name, _key, _digits in _DEPTH_COLUMNS]]
    row = [f"{depth['num_images']} images", *[_fmt(depth[key], digits) for _name, key, digits in _DEPTH_COLUMNS]]
    return "Depth (AbsRel, SqRel, SILog: see docs/metrics.md; RMSE in metres)\n" + _table(header, [row])


def format_report(result: dict, per_class: bool = False) -> str:
    """The whole result as text for a terminal."""
    frames = result.get("num_frames", 0)
    parts = [f"Panoptic quality over {frames} frames (PQ, SQ, RQ, DPQ in %)", panoptic_table(result)]
    if result.get("dpq") is None and result.get("settings", {}).get("frames_without_depth"):
        parts.append(f"DPQ not computed: {result['settings']['frames_without_depth']} frames lack predicted or "
                     "ground-truth depth")
    if per_class:
        parts += ["", per_class_table(result)]
    for extra in (dvpq_table(result), depth_table(result)):
        if extra:
            parts += ["", extra]
    return "\n".join(parts)


def write_json(result: dict, path: str | Path) -> Path:
    """Write the result as indented JSON (creating the folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")
    return path


def flatten(result: dict) -> dict[str, float]:
    """Scalars for logging (TensorBoard): "pq/all", "sq/things", "dpq@0.5/stuff", "dpq/all", "dvpq/all", "depth/rmse"."""
    scalars: dict[str, float] = {}
    for _label, group in _GROUPS:
        for metric in ("pq", "sq", "rq"):
            value = result["pq"][group][metric]
            if value is not None:
                scalars[f"{metric}/{group}"] = value
        if result.get("dpq"):
            for key in _lambda_keys(result):
                value = result["dpq"][key][group]["pq"]
                if value is not None:
                    scalars[f"dpq@{key}/{group}"] = value
            if result["dpq"]["mean"][group] is not None:
                scalars[f"dpq/{group}"] = result["dpq"]["mean"][group]
        if result.get("dvpq") and result["dvpq"].get("mean") and result["dvpq"]["mean"][group] is not None:
            scalars[f"dvpq/{group}"] = result["dvpq"]["mean"][group]
    for _name, key, _digits in _DEPTH_COLUMNS:
        if result.get("depth"):
            scalars[f"depth/{key}"] = result["depth"][key]
    return scalars
