# Copyright: (c) 2026, dataplatform.dask contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Node tools: worker launch/retire (worker_ctl), drift check (env_check), MUNGE key fetch, journal export."""
