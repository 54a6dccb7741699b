# Copyright: (c) 2026, dataplatform.dask contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The placeholder claims protocol, in SSM Parameter Store under one path per cluster.

``<path>/wanted/<node>``: the controller's ResumeProgram asked for the placeholder (the value is
when). ``<path>/claims/<node>``: the instance id that took it at boot, created with
Overwrite=False, so the first of two booting instances wins and the other tries the next node.
The controller (``slurm_fleet``) records and releases; a booting instance (``node_claim``)
claims. Both sides read and write only through this class.
"""

from __future__ import annotations


class Claims:
    """Claims under ``path``; AWS failures become ``error(action, exception)`` (each side's kind)."""

    def __init__(self, path, ssm, error=None):
        self.path = path.rstrip("/")
        self.ssm = ssm
        self.error = error or (lambda action, e: RuntimeError(f"{action}: {e}"))

    def call(self, action, method, **params):
        import botocore.exceptions

        try:
            return getattr(self.ssm, method)(**params)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
            raise self.error(action, e) from None

    def _by_path(self, kind):
        found, token = {}, None
        while True:
            params = {"Path": f"{self.path}/{kind}", "Recursive": False}
            if token:
                params["NextToken"] = token
            page = self.call(f"list {self.path}/{kind}", "get_parameters_by_path", **params)
            for parameter in page.get("Parameters", []):
                found[parameter["Name"].rsplit("/", 1)[-1]] = parameter["Value"]
            token = page.get("NextToken")
            if not token:
                return found

    def claims(self):
        """{node: instance id}"""
        return self._by_path("claims")

    def wanted(self):
        """{node: when ResumeProgram asked for it}"""
        return self._by_path("wanted")

    # The controller's side.
    def want(self, node, when):
        self.call(
            f"record {self.path}/wanted/{node}",
            "put_parameter",
            Name=f"{self.path}/wanted/{node}",
            Value=when,
            Type="String",
            Overwrite=True,
        )

    def release(self, node):
        """Forget both records of a node (its instance is gone or was never started)."""
        import botocore.exceptions

        for kind in ("claims", "wanted"):
            try:
                self.ssm.delete_parameter(Name=f"{self.path}/{kind}/{node}")
            except botocore.exceptions.ClientError as e:
                if e.response.get("Error", {}).get("Code") != "ParameterNotFound":
                    raise self.error(f"delete {self.path}/{kind}/{node}", e) from None
            except botocore.exceptions.BotoCoreError as e:
                raise self.error(f"delete {self.path}/{kind}/{node}", e) from None

    # A booting instance's side.
    def take(self, node, iid, log=print):
        """True when ``iid`` now holds the node, False when another instance took it first."""
        import botocore.exceptions

        try:
            self.ssm.put_parameter(Name=f"{self.path}/claims/{node}", Value=iid, Type="String", Overwrite=False)
        except botocore.exceptions.ClientError as e:
            if e.response.get("Error", {}).get("Code") == "ParameterAlreadyExists":
                return False
            raise self.error(f"claim {self.path}/claims/{node}", e) from None
        except botocore.exceptions.BotoCoreError as e:
            raise self.error(f"claim {self.path}/claims/{node}", e) from None
        try:
            self.ssm.delete_parameter(Name=f"{self.path}/wanted/{node}")
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
            log(f"claimed {node}, but could not clear {self.path}/wanted/{node}: {e}")
        return True

    def claim(self, iid, log=print):
        """The node ``iid`` holds (a reboot) or has just taken, or None."""
        for node, holder in sorted(self.claims().items()):
            if holder == iid:
                log(f"{iid} already holds {node} (a reboot); keeping it")
                return node
        for node in sorted(self.wanted(), key=lambda n: (len(n), n)):
            if self.take(node, iid, log):
                log(f"{iid} claimed {node}")
                return node
            log(f"{node} was taken by another instance; trying the next")
        return None
