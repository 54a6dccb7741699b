# Copyright: (c) 2026, dataplatform.dask contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Client-side Kerberos for dask-gateway without pykerberos: ``gateway.auth.type`` set to
``dataplatform_dask.gateway.client.KerberosAuth`` (the role's client tasks write it)."""

from __future__ import annotations

import base64

from dask_gateway.auth import GatewayAuth

from .spnego import initiate


class KerberosAuth(GatewayAuth):
    """Sends ``Authorization: Negotiate`` from the user's ticket cache (kinit first)."""

    def pre_request(self, resp):
        token = initiate(resp.url.host)
        return {"Authorization": "Negotiate " + base64.b64encode(token).decode()}, None
