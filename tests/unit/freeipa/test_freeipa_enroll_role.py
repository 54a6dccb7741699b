"""freeipa_enroll's templates and its ipa-client-install command line, rendered as Ansible does.

The ipa_client_install path needs a real FreeIPA server, so what it would run is checked here
(and in check mode by tests/integration/freeipa/test_freeipa_enroll_check_mode.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

ROLE = Path(__file__).resolve().parents[3] / "roles" / "freeipa_enroll"


def _trusted(data: dict) -> dict:
    """Role files are trusted templates, as when Ansible loads them (data tagging, 2.19+)."""
    return {k: trust_as_template(v) if isinstance(v, str) else v for k, v in data.items()}


DEFAULTS = _trusted(yaml.safe_load((ROLE / "defaults" / "main.yml").read_text()))
VARS = _trusted(yaml.safe_load((ROLE / "vars" / "main.yml").read_text()))
BASE = {
    **DEFAULTS,
    **VARS,
    "ansible_managed": "Ansible managed",
    "ansible_facts": {"fqdn": "gw.example.com"},
    "freeipa_enroll_domain": "example.com",
    "freeipa_enroll_realm": "EXAMPLE.COM",
    "freeipa_enroll_hostname": "gw.example.com",
}


def render(template: str | None = None, expr: str | None = None, **overrides):
    variables = {**BASE, **overrides}
    templar = Templar(loader=DataLoader(), variables=variables)
    if template:
        return templar.template(trust_as_template((ROLE / "templates" / template).read_text()))
    return templar.template(trust_as_template(expr))


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            {"freeipa_enroll_otp": "OTP1", "freeipa_enroll_server": "ipa1.example.com"},
            [
                "ipa-client-install",
                "--unattended",
                "--domain",
                "example.com",
                "--realm",
                "EXAMPLE.COM",
                "--hostname",
                "gw.example.com",
                "--server",
                "ipa1.example.com",
                "--mkhomedir",
                "--password",
                "OTP1",
            ],
        ),
        (
            {
                "freeipa_enroll_principal": "enroller",
                "freeipa_enroll_password": "pw",
                "freeipa_enroll_mkhomedir": False,
            },
            [
                "ipa-client-install",
                "--unattended",
                "--domain",
                "example.com",
                "--realm",
                "EXAMPLE.COM",
                "--hostname",
                "gw.example.com",
                "--principal",
                "enroller",
                "--password",
                "pw",
            ],
        ),
    ],
    ids=["otp-with-server", "principal-discovered-server"],
)
def test_ipa_client_install_command_line(overrides, expected):
    argv = render(expr="{{ _freeipa_enroll_ipa_client_install_argv }}", **overrides)
    assert list(argv) == expected


def test_otp_wins_over_the_principal():
    argv = render(
        expr="{{ _freeipa_enroll_ipa_client_install_argv }}",
        freeipa_enroll_otp="OTP",
        freeipa_enroll_principal="p",
        freeipa_enroll_password="pw",
    )
    assert "--principal" not in argv and argv[-2:] == ["--password", "OTP"]


LDAP = {
    "freeipa_enroll_kdcs": ["10.0.0.1:88", "10.0.0.2"],
    "freeipa_enroll_admin_server": "10.0.0.1:749",
    "freeipa_enroll_ldap_uri": "ldaps://ipa1.example.com",
    "freeipa_enroll_ldap_base": "dc=example,dc=com",
    "freeipa_enroll_ldap_bind_dn": "uid=dask-service,cn=sysaccounts,cn=etc,dc=example,dc=com",
    "freeipa_enroll_ldap_bind_password": "bind-secret",
}


def conf_lines(text: str) -> dict:
    out = {}
    for line in text.splitlines():
        if " = " in line and not line.lstrip().startswith("#"):
            k, v = line.split(" = ", 1)
            out.setdefault(k.strip(), v.strip())
    return out


def test_sssd_conf_reads_freeipas_tree_and_asks_the_kdc():
    conf = conf_lines(render("sssd.conf.j2", **LDAP))
    assert conf["id_provider"] == "ldap" and conf["auth_provider"] == "krb5"
    assert conf["ldap_user_search_base"] == "cn=users,cn=accounts,dc=example,dc=com"
    assert conf["ldap_group_search_base"] == "cn=groups,cn=accounts,dc=example,dc=com"
    assert conf["ldap_schema"] == "rfc2307bis"
    assert conf["ldap_default_authtok"] == "bind-secret"
    assert conf["krb5_server"] == "10.0.0.1:88, 10.0.0.2"
    assert conf["krb5_validate"] == "true"
    assert "ldap_tls_cacert" not in conf


def test_sssd_conf_verifies_ldaps_with_the_ca():
    conf = conf_lines(render("sssd.conf.j2", **LDAP, freeipa_enroll_ldap_ca_cert="-----BEGIN CERTIFICATE-----"))
    assert conf["ldap_tls_reqcert"] == "demand"
    assert conf["ldap_tls_cacert"] == "/etc/sssd/freeipa-ca.crt"


def test_krb5_conf_lists_every_kdc():
    text = render("krb5.conf.j2", **LDAP)
    assert "default_realm = EXAMPLE.COM" in text
    assert "kdc = 10.0.0.1:88" in text and "kdc = 10.0.0.2" in text
    assert "admin_server = 10.0.0.1:749" in text
    assert ".example.com = EXAMPLE.COM" in text


def sssd_sections(text: str):
    import configparser

    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(text)
    return parser


def test_sssd_conf_without_sudo_is_unchanged():
    conf = sssd_sections(render("sssd.conf.j2", **LDAP))
    assert conf["sssd"]["services"] == "nss, pam" and conf["sssd"]["domains"] == "example.com"
    assert "sudo_provider" not in conf["domain/example.com"]


def test_sssd_conf_with_sudo_reads_the_compat_tree_for_both_domains():
    conf = sssd_sections(render("sssd.conf.j2", **LDAP, freeipa_enroll_sudo=True))
    assert conf["sssd"]["services"] == "nss, pam, sudo"
    assert conf["sssd"]["domains"] == "example.com, local"
    for name in ("domain/example.com", "domain/local"):
        assert conf[name]["sudo_provider"] == "ldap"
        assert conf[name]["ldap_sudo_search_base"] == "ou=sudoers,dc=example,dc=com"
    local = conf["domain/local"]
    assert local["id_provider"] == "proxy" and local["proxy_lib_name"] == "files"
    assert local["access_provider"] == "permit" and local["auth_provider"] == "none"
    assert local["ldap_uri"] == "ldaps://ipa1.example.com" and local["ldap_default_authtok"] == "bind-secret"


def test_sssd_conf_with_sudo_and_no_local_users():
    conf = sssd_sections(
        render("sssd.conf.j2", **LDAP, freeipa_enroll_sudo=True, freeipa_enroll_sudo_local_users=False)
    )
    assert conf["sssd"]["domains"] == "example.com" and not conf.has_section("domain/local")
    assert conf["domain/example.com"]["sudo_provider"] == "ldap"
