# -*- coding: utf-8 -*-
# Copyright: dataplatform maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One FreeIPA JSON-RPC client for every dataplatform.dask.freeipa_* module, on python-freeipa.

It logs in by password or Kerberos, verifies the server against a CA file or the system trust
store (never `verify=False` unless the play says so), and turns FreeIPA's errors into messages
that name the action and the object ("add member to group data_engineers: ...").
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import traceback

from ansible.module_utils.basic import env_fallback, missing_required_lib

try:
    import requests
    from python_freeipa import ClientMeta
    from python_freeipa import exceptions as ipa_exc

    HAS_FREEIPA = True
    FREEIPA_IMPORT_ERROR = None
except ImportError:
    HAS_FREEIPA = False
    FREEIPA_IMPORT_ERROR = traceback.format_exc()

# FreeIPA's error numbers (ipalib/errors.py) for the ones python-freeipa folds together.
NOT_FOUND = 4001
DUPLICATE_ENTRY = 4002
EMPTY_MODLIST = 4202
ERROR_NAMES = {
    901: "VersionError",
    905: "CommandError",
    1201: "InvalidSessionPassword",
    2100: "ACIError",
    3005: "OptionError",
    3007: "RequirementError",
    3009: "ValidationError",
    NOT_FOUND: "NotFound",
    DUPLICATE_ENTRY: "DuplicateEntry",
    4007: "AlreadyPosixGroup",
    EMPTY_MODLIST: "EmptyModlist",
    4309: "ProtectedEntryError",
}


def freeipa_argument_spec():
    """The connection options (doc fragment dataplatform.dask.freeipa)."""
    return dict(
        ipa_host=dict(type="str", required=True, fallback=(env_fallback, ["IPA_HOST"])),
        ipa_user=dict(type="str", default="admin", fallback=(env_fallback, ["IPA_USER"])),
        ipa_pass=dict(type="str", no_log=True, fallback=(env_fallback, ["IPA_PASS"])),
        ipa_auth=dict(type="str", default="password", choices=["password", "kerberos"]),
        ipa_ca_cert=dict(type="path", fallback=(env_fallback, ["IPA_CA_CERT"])),
        validate_certs=dict(type="bool", default=True),
    )


def freeipa_required_if():
    return [("ipa_auth", "password", ("ipa_pass",))]


class FreeIPAModuleError(Exception):
    """An error already worded for the operator; the module fails with it."""

    def __init__(self, msg, code=None):
        super(FreeIPAModuleError, self).__init__(msg)
        self.msg = msg
        self.code = code


def verify_option(params):
    """What requests gets as `verify`: the CA file, the system store (True) or, if asked, False."""
    if not params.get("validate_certs", True):
        return False
    return params.get("ipa_ca_cert") or True


def describe_error(err):
    """FreeIPA error -> (code, "Name: message")."""
    code = getattr(err, "code", None)
    name = ERROR_NAMES.get(code) or type(err).__name__
    message = getattr(err, "message", None) or str(err)
    return code, "%s: %s" % (name, message)


class FreeIPAClient(object):
    """A logged-in JSON-RPC session. Every call names what it does for its error message."""

    def __init__(self, params, client=None):
        self.params = params
        self.host = params["ipa_host"]
        self.url = "https://%s/ipa" % self.host
        self._client = client

    @classmethod
    def from_module(cls, module):
        if not HAS_FREEIPA:
            module.fail_json(msg=missing_required_lib("python-freeipa"), exception=FREEIPA_IMPORT_ERROR)
        return cls(module.params)

    def _transport_error(self, action, err):
        if isinstance(err, requests.exceptions.SSLError):
            ca = self.params.get("ipa_ca_cert") or "the system trust store"
            return FreeIPAModuleError(
                "%s: the TLS certificate of %s is not trusted by %s (set ipa_ca_cert to the FreeIPA CA, "
                "usually /etc/ipa/ca.crt): %s" % (action, self.url, ca, err)
            )
        return FreeIPAModuleError("%s: cannot reach FreeIPA at %s: %s" % (action, self.url, err))

    def login(self):
        if self._client is None:
            self._client = ClientMeta(self.host, verify_ssl=verify_option(self.params), dns_discovery=False)
        user = self.params.get("ipa_user")
        action = "log in to FreeIPA at %s as %s" % (self.url, user)
        try:
            if self.params.get("ipa_auth") == "kerberos":
                action = "log in to FreeIPA at %s with the Kerberos ticket in the credential cache" % self.url
                self._client.login_kerberos()
            else:
                self._client.login(user, self.params.get("ipa_pass"))
        except requests.exceptions.RequestException as err:
            raise self._transport_error(action, err) from err
        except ImportError as err:
            raise FreeIPAModuleError("%s: %s (install requests-gssapi)" % (action, err)) from err
        except ipa_exc.Unauthorized as err:
            reason = {
                "InvalidSessionPassword": "wrong user name or password",
                "PasswordExpired": "the password has expired",
                "UserLocked": "the account is locked",
                "KrbPrincipalExpired": "the principal has expired",
                "Denied": "login denied",
            }.get(type(err).__name__, "unauthorized")
            raise FreeIPAModuleError("%s: %s" % (action, reason)) from None
        except ipa_exc.FreeIPAError as err:
            raise FreeIPAModuleError("%s: %s" % (action, describe_error(err)[1])) from None
        return self

    def call(self, action, method, args=None, options=None):
        """Run one API command; `action` names it for the operator ("add group data_engineers")."""
        try:
            return self._client._request(method, args or [], dict(options or {}))
        except requests.exceptions.RequestException as err:
            raise self._transport_error(action, err) from err
        except ipa_exc.FreeIPAError as err:
            code, text = describe_error(err)
            raise FreeIPAModuleError("%s: %s" % (action, text), code=code) from None

    def find(self, action, method, key, options=None):
        """`*_show` that returns None for NotFound instead of failing."""
        try:
            return self.call(action, method, [key], options)["result"]
        except FreeIPAModuleError as err:
            if err.code == NOT_FOUND:
                return None
            raise

    def member_call(self, action, method, args, options):
        """`*_add_member`/`*_remove_member` report failures in `failed`, never raise: make them fail."""
        result = self.call(action, method, args, options)
        problems = []
        for kinds in (result.get("failed") or {}).values():
            for kind, entries in (kinds or {}).items():
                for entry in entries or []:
                    name, why = [*list(entry), ""][:2] if isinstance(entry, (list, tuple)) else (entry, "")
                    problems.append("%s %s: %s" % (kind, name, why))
        if problems:
            raise FreeIPAModuleError("%s: %s" % (action, "; ".join(problems)))
        return result

    def logout(self):
        try:
            self._client.logout()
        except Exception:  # noqa: S110 - the session expires anyway
            pass


def manage_entry(module, kind, key, *, read_method, delete_method, normalize, ensure_present, result_key):
    """The `run()` every freeipa_* module shares, for one entry (`kind` `key`, e.g. group data_engineers).

    Logs in, reads the entry with `read_method` (None when absent), deletes it with `delete_method`
    for state=absent or calls `ensure_present(client, current)` -> (changed, after) otherwise, and
    logs out. Check mode skips the delete. Returns the module's result: `changed`, `result_key`
    (the entry after the task, {} when absent) and, in diff mode, `diff` {before, after}.
    """
    client = FreeIPAClient.from_module(module).login()
    try:
        current = normalize(client.find("read %s %s" % (kind, key), read_method, key))
        if module.params["state"] == "absent":
            changed, after = current is not None, None
            if changed and not module.check_mode:
                client.call("delete %s %s" % (kind, key), delete_method, [key])
        else:
            changed, after = ensure_present(client, current)
    finally:
        client.logout()
    result = {"changed": changed, result_key: after or {}}
    if module._diff:  # pylint: disable=protected-access
        result["diff"] = {"before": current or {}, "after": after or {}}
    return result


def exit_module(module, run):
    """Exit with what `run(module)` returns, or fail with the message of its FreeIPAModuleError."""
    try:
        module.exit_json(**run(module))
    except FreeIPAModuleError as err:
        module.fail_json(msg=err.msg)


def first(entry, key, default=None):
    """FreeIPA returns attributes as lists: the first value or `default`."""
    value = (entry or {}).get(key)
    if isinstance(value, list):
        return value[0] if value else default
    return default if value is None else value


def diff_members(current, wanted, append):
    """(to_add, to_remove), sorted, for append or exact membership."""
    current = set(current or [])
    wanted = set(wanted or [])
    to_add = sorted(wanted - current)
    to_remove = [] if append else sorted(current - wanted)
    return to_add, to_remove
