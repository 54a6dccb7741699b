# -*- coding: utf-8 -*-

# Copyright: dataplatform.dask contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Shared code for the dataplatform.dask Slurm accounting module.

sacctmgr is run with ``--noheader --parsable2`` for reading and ``--immediate`` for
changes; every failure names the action and the object ("add qos analysts: ...").
Values are normalised before they are compared, so sacctmgr's own spelling (``8G`` for
``8192M``, flags in any order) never shows as a change.
"""

from __future__ import annotations

import re


class SlurmError(Exception):
    """Bad input or a failed sacctmgr call; the message names the action and the object."""


MEM_UNITS = {"K": 1.0 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}


def parse_tres(text):
    """'cpu=4,mem=8G' -> {'cpu': '4', 'mem': '8192'} (memory in MB), '' -> {}."""
    result = {}
    for raw in (text or "").split(","):
        part = raw.strip()
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep:
            raise SlurmError(f"TRES '{part}' is not KEY=VALUE (for example cpu=4 or mem=8G)")
        result[key.strip().lower()] = normalize_tres_value(key.strip().lower(), value.strip())
    return result


def normalize_tres_value(key, value):
    """Memory to whole MB ('8G' -> '8192'); counts stay as given. Raises SlurmError on nonsense."""
    value = str(value).strip()
    if key == "mem":
        match = re.match(r"^([0-9]+(?:\.[0-9]+)?)\s*([KMGT])?B?$", value, re.IGNORECASE)
        if not match:
            raise SlurmError(f"TRES mem={value} is not a size such as 8G or 8192M")
        unit = (match.group(2) or "M").upper()
        return str(int(float(match.group(1)) * MEM_UNITS[unit]))
    if not re.match(r"^[0-9]+$", value):
        raise SlurmError(f"TRES {key}={value} is not a whole number")
    return value


def normalize_tres(wanted):
    """A TRES dict from the task ({'cpu': 4, 'mem': '8G'}) in the form parse_tres returns."""
    return {str(k).strip().lower(): normalize_tres_value(str(k).strip().lower(), v) for k, v in (wanted or {}).items()}


def format_tres(wanted, current):
    """The sacctmgr value setting ``wanted`` over ``current``: keys no longer wanted become -1."""
    parts = [f"{k}={v}" for k, v in sorted(wanted.items())]
    parts += [f"{k}=-1" for k in sorted(set(current) - set(wanted))]
    return ",".join(parts)


def split_list(text):
    return sorted(p for p in (text or "").split(",") if p)


def run_sacctmgr(module, action, args, check=True):
    """Run sacctmgr with ``args``; fails naming ``action`` when it exits non-zero. Returns stdout."""
    cmd = [module.params["sacctmgr_path"], *list(args)]
    rc, out, err = module.run_command(cmd, environ_update={"LC_ALL": "C"})
    if check and rc != 0:
        detail = " ".join((err or out or "").split()) or f"exit code {rc}"
        raise SlurmError(f"{action}: sacctmgr failed: {detail}")
    return out


def show(module, action, entity, where, fields):
    """Rows of ``sacctmgr show <entity> where ... format=...`` as dicts (fields in order)."""
    args = ["--noheader", "--parsable2", "show", entity]
    if where:
        args += ["where"] + [f"{k}={v}" for k, v in where.items()]
    args.append("format=" + ",".join(fields))
    out = run_sacctmgr(module, action, args)
    rows = []
    for line in out.splitlines():
        if not line.strip():
            continue
        values = line.split("|")
        rows.append(dict(zip(fields, values + [""] * (len(fields) - len(values)), strict=False)))
    return rows


def change(module, action, args):
    """Run a mutating sacctmgr command (``--immediate``) unless in check mode."""
    if module.check_mode:
        return
    run_sacctmgr(module, action, ["--immediate", *list(args)])
