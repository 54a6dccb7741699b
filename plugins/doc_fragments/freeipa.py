# -*- coding: utf-8 -*-
# Copyright: dataplatform maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # Connection options shared by every dataplatform.dask.freeipa_* module.
    DOCUMENTATION = r"""
options:
  ipa_host:
    description:
      - The FreeIPA server to talk to, as C(host) or C(host:port). The JSON-RPC API is reached at
        C(https://ipa_host/ipa/session/json).
      - If not set, the value of the E(IPA_HOST) environment variable is used.
    type: str
    required: true
  ipa_user:
    description:
      - The principal to log in as with O(ipa_auth=password).
      - If not set, the value of the E(IPA_USER) environment variable is used.
    type: str
    default: admin
  ipa_pass:
    description:
      - The password of O(ipa_user). Never logged.
      - If not set, the value of the E(IPA_PASS) environment variable is used.
    type: str
  ipa_auth:
    description:
      - V(password) logs in with O(ipa_user) and O(ipa_pass) (C(/ipa/session/login_password)).
      - V(kerberos) uses the Kerberos ticket already in the credential cache (C(kinit) first, or
        E(KRB5CCNAME)); it needs the C(requests-gssapi) Python package.
    type: str
    choices: [password, kerberos]
    default: password
  ipa_ca_cert:
    description:
      - The CA certificate (PEM file) the server's certificate is verified against, usually
        C(/etc/ipa/ca.crt) on an enrolled host.
      - If not set, the system's trust store is used. Verification is never turned off unless
        O(validate_certs=false) says so.
      - If not set, the value of the E(IPA_CA_CERT) environment variable is used.
    type: path
  validate_certs:
    description:
      - Verify the server's TLS certificate. Set to V(false) only for a throw-away lab server.
    type: bool
    default: true
requirements:
  - python-freeipa >= 1.0.5
notes:
  - The modules talk to the JSON-RPC API from wherever they run, usually the controller
    (O(ignore:delegate_to=localhost)); the target needs no FreeIPA client.
"""
