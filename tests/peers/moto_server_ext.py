"""moto_server with the dataplatform extensions (tests/peers/moto_ext.py) loaded.

    python -m tests.peers.moto_server_ext -H 127.0.0.1 -p 5000

Takes the same arguments as ``moto_server``; bind it to 127.0.0.1 only.
"""

from __future__ import annotations

import sys

from moto import server

from tests.peers import moto_ext

if __name__ == "__main__":
    moto_ext.patch()
    server.main(sys.argv[1:])
