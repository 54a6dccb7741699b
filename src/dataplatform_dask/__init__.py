# Copyright: (c) 2026, dataplatform.dask contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""dataplatform.dask's own Python, one versioned package pinned in the Dask lock.

- ``gateway``: Dask Gateway's FreeIPA authentication, the platform policy and the backends.
- ``forkserver``: pre-imported starts of users' schedulers and workers (``core``), with a front
  end for the gateway's local backend (``gateway``) and one for Slurm nodes (``slurm_node``,
  reached by the jobs' ``job_start``).
- ``fleet``: the Slurm fleet daemon (power saving, lifecycle hook, placeholders, caps) and the
  boot-time placeholder claim, over one SSM claims protocol.
- ``node``: node tools (worker launch/retire, environment drift check, MUNGE key fetch,
  journal export).
"""

from importlib import metadata

try:
    __version__ = metadata.version("dataplatform-dask")
except metadata.PackageNotFoundError:  # pragma: no cover - run from a source tree
    __version__ = "0+unknown"
