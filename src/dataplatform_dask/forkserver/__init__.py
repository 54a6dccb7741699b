# Copyright: (c) 2026, dataplatform.dask contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fork server: one pre-imported process forks users' schedulers and workers (core).

Front ends: the gateway's local backend (gateway) and Slurm jobs (slurm_node, reached by job_start).
"""
