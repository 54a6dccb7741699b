# Copyright: (c) 2026, dataplatform.dask contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""dataplatform.dask's Dask Gateway pieces: FreeIPA authentication (auth), the platform's rules
(policy), backends that apply them (backend), and the settings loader (config)."""
