"""A fake sacctmgr for the slurm_sacctmgr unit tests.

Implements the subset the module uses (show/add/modify/delete of qos, account, user and
association) over a JSON state file ($FAKE_SACCTMGR_STATE), answering and failing the way
Slurm 22.05's sacctmgr does (parsable2 output, memory TRES printed as 8G, exit 1 on "Nothing
modified"). Every call is appended to $FAKE_SACCTMGR_STATE.log so tests can count changes.
"""

from __future__ import annotations

import json
import os
import sys

STATE = os.environ["FAKE_SACCTMGR_STATE"]


def load():
    if os.path.exists(STATE):
        with open(STATE) as f:
            return json.load(f)
    return {
        "qos": {
            "normal": {"priority": 0, "flags": [], "maxtrespu": {}, "maxtres": {}, "description": "Normal QOS default"}
        },
        "accounts": {"root": {"description": "default root account"}},
        # (cluster, account, user) -> association
        "assocs": [
            {"cluster": "molecule", "account": "root", "user": "", "fairshare": 1, "qos": ["normal"], "defaultqos": ""}
        ],
        "users": {"root": {"adminlevel": "Administrator"}},
    }


def save(state):
    with open(STATE, "w") as f:
        json.dump(state, f)


def fmt_tres(tres):
    parts = []
    for key, value in sorted(tres.items()):
        shown = value
        if key == "mem":
            shown = f"{int(value) // 1024}G" if int(value) % 1024 == 0 else f"{value}M"
        parts.append(f"{key}={shown}")
    return ",".join(parts)


def parse_tres(text, current):
    result = dict(current)
    for part in text.split(","):
        key, _sep, value = part.partition("=")
        if value == "-1":
            result.pop(key, None)
            continue
        if key == "mem":
            units = {"G": 1024, "M": 1, "T": 1024 * 1024}
            value = str(int(float(value[:-1]) * units[value[-1]])) if value[-1] in units else value
        result[key] = value
    return result


def kv(args):
    return dict(a.split("=", 1) for a in args)


def fail(msg, code=1):
    print(msg, file=sys.stderr)
    sys.exit(code)


def split(args):
    where, sets, rest = {}, {}, []
    mode = None
    for a in args:
        if a == "where":
            mode = "where"
        elif a == "set":
            mode = "set"
        elif "=" in a and mode == "set":
            k, v = a.split("=", 1)
            sets[k.lower()] = v
        elif "=" in a:
            k, v = a.split("=", 1)
            where[k.lower()] = v
        else:
            rest.append(a)
    return where, sets, rest


def show(state, entity, args):
    where, _sets, _rest = split([a for a in args if not a.startswith("format=")])
    fields = next(a for a in args if a.startswith("format=")).split("=", 1)[1].split(",")
    rows = []
    if entity == "qos":
        for name, q in state["qos"].items():
            if where.get("name", name) != name:
                continue
            row = {
                "name": name,
                "priority": str(q["priority"]),
                "flags": ",".join(q["flags"]),
                "maxtrespu": fmt_tres(q["maxtrespu"]),
                "maxtres": fmt_tres(q["maxtres"]),
                "description": q["description"],
            }
            rows.append(row)
    elif entity == "account":
        for name, a in state["accounts"].items():
            if where.get("name", name) == name:
                rows.append({"account": name, "description": a["description"]})
    elif entity == "user":
        for name, u in state["users"].items():
            if where.get("name", name) == name:
                rows.append({"user": name, "adminlevel": u["adminlevel"]})
    elif entity == "association":
        for a in state["assocs"]:
            if any(a.get(k, "") != v for k, v in where.items()):
                continue
            rows.append(
                {
                    "cluster": a["cluster"],
                    "account": a["account"],
                    "user": a["user"],
                    "partition": "",
                    "fairshare": str(a["fairshare"]),
                    "qos": ",".join(sorted(a["qos"])),
                    "defaultqos": a["defaultqos"],
                }
            )
    for row in rows:
        print("|".join(row[f] for f in fields))


def main(argv):
    args = [a for a in argv if a not in ("--noheader", "--parsable2", "--immediate")]
    with open(STATE + ".log", "a") as log:
        log.write(" ".join(argv) + "\n")
    state = load()
    verb, entity, rest = args[0], args[1], args[2:]
    if verb == "show":
        return show(state, entity, rest)
    where, sets, names = split(rest)
    if verb == "add":
        name = names[0]
        if entity == "qos":
            if name in state["qos"]:
                fail(" Nothing new added.")
            state["qos"][name] = {"priority": 0, "flags": [], "maxtrespu": {}, "maxtres": {}, "description": name}
        elif entity == "account":
            if name in state["accounts"]:
                fail(" Nothing new added.")
            # sacctmgr lower-cases descriptions and organizations.
            state["accounts"][name] = {"description": where.get("description", name).lower()}
            parent = next(a for a in state["assocs"] if a["account"] == where.get("parent", "root") and not a["user"])
            state["assocs"].append(
                {
                    "cluster": where["cluster"],
                    "account": name,
                    "user": "",
                    "fairshare": 1,
                    "qos": list(parent["qos"]),
                    "defaultqos": parent["defaultqos"],
                }
            )
        elif entity == "user":
            acct = next((a for a in state["assocs"] if a["account"] == where["account"] and not a["user"]), None)
            if acct is None:
                fail(f" This account '{where['account']}' doesn't exist.")
            state["users"].setdefault(name, {"adminlevel": "None"})
            state["assocs"].append(
                {
                    "cluster": where["cluster"],
                    "account": where["account"],
                    "user": name,
                    "fairshare": 1,
                    "qos": list(acct["qos"]),
                    "defaultqos": acct["defaultqos"],
                }
            )
    elif verb == "modify":
        if entity == "qos":
            q = state["qos"].get(where["name"])
            if q is None:
                fail(" Nothing modified")
            for k, v in sets.items():
                if k == "priority":
                    q["priority"] = int(v)
                elif k == "flags":
                    q["flags"] = [] if v == "-1" else sorted(v.split(","))
                elif k == "maxtresperuser":
                    q["maxtrespu"] = parse_tres(v, q["maxtrespu"])
                elif k == "maxtresperjob":
                    q["maxtres"] = parse_tres(v, q["maxtres"])
                elif k == "description":
                    q["description"] = v.lower()
                else:
                    fail(f" Unknown option: {k}")
        else:
            if "adminlevel" in sets:
                state["users"][where["name"]]["adminlevel"] = sets.pop("adminlevel")
            user = where["name"] if entity == "user" else ""
            account = where.get("account") if entity == "user" else where["name"]
            matches = [a for a in state["assocs"] if a["user"] == user and a["account"] == account]
            if not matches and sets:
                fail(" Nothing modified")
            for a in matches:
                for k, v in sets.items():
                    if k == "fairshare":
                        a["fairshare"] = int(v)
                    elif k == "qos":
                        a["qos"] = sorted(v.split(","))
                    elif k == "defaultqos":
                        if v not in a["qos"]:
                            fail(" Default QOS is not in the QOS list")
                        a["defaultqos"] = v
                    elif k == "description" and entity == "account":
                        state["accounts"][account]["description"] = v.lower()
                    else:
                        fail(f" Unknown option: {k}")
    elif verb == "delete":
        if entity == "qos":
            state["qos"].pop(where["name"], None)
        elif entity == "account":
            state["accounts"].pop(where["name"], None)
            state["assocs"] = [a for a in state["assocs"] if a["account"] != where["name"]]
        else:
            state["assocs"] = [
                a for a in state["assocs"] if not (a["user"] == where["name"] and a["account"] == where["account"])
            ]
    save(state)
    return None


if __name__ == "__main__":
    main(sys.argv[1:])
