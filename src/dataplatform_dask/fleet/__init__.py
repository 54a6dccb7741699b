# Copyright: (c) 2026, dataplatform.dask contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The elastic Slurm fleet: the controller's daemon (slurm_fleet) and the boot-time placeholder claim (node_claim)."""
