"""Stand-in for ansible-test's get-pip bootstrap script, whose download host is unreachable here.

It does the same job from what is already on the machine: ensurepip puts the interpreter's
bundled pip into the fresh virtualenv, then that pip installs the requested pip from the
package index. ansible-test runs pip with PIP_CONFIG_FILE=/dev/null and a trimmed
environment, so the machine's CA bundle (from /etc/pip.conf, else the system bundle) is
passed explicitly; the pip installed here (>= 24.2) then trusts the system store itself.
"""

import configparser
import ensurepip
import os
import subprocess
import sys

GET_PIP_ONLY = {"--no-setuptools", "--no-wheel"}


def ca_bundle():
    conf = configparser.ConfigParser()
    conf.read("/etc/pip.conf")
    for candidate in (conf.get("global", "cert", fallback=None), "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and os.path.isfile(candidate):
            return candidate
    return None


ensurepip.bootstrap(upgrade=True)
args = [a for a in sys.argv[1:] if a not in GET_PIP_ONLY]
cert = ca_bundle()
if cert:
    args = ["--cert", cert, *args]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", *args]))  # noqa: S603 - our own interpreter
