#!/usr/bin/env python3
"""Every PEM private key stored anywhere under the given directories, in any
file (sled's pages, logs, JSON with escaped newlines included), printed as
one line per key: the SHA-256 of its public key (DER), then the file.
Usage: private_keys.py DIR...  (needs openssl)."""
import hashlib, os, re, subprocess, sys

BLOCK = re.compile(rb"-----BEGIN ([A-Z ]*)PRIVATE KEY-----(.{40,8000}?)-----END \1PRIVATE KEY-----", re.S)

def public_key_digest(label, body):
    # A key inside JSON has "\n" escapes where the PEM had newlines.
    b64 = re.sub(rb"\\n|\\r|\s", b"", body)
    pem = b"-----BEGIN " + label + b"PRIVATE KEY-----\n" + b64 + b"\n-----END " + label + b"PRIVATE KEY-----\n"
    out = subprocess.run(["openssl", "pkey", "-pubout", "-outform", "DER"], input=pem, capture_output=True)
    return hashlib.sha256(out.stdout).hexdigest() if out.returncode == 0 and out.stdout else None

for root in sys.argv[1:]:
    for dirpath, _, files in os.walk(root):
        for f in files:
            path = os.path.join(dirpath, f)
            try:
                if not os.path.isfile(path) or os.path.islink(path):
                    continue
                data = open(path, "rb").read()
            except OSError:
                continue
            for m in BLOCK.finditer(data):
                d = public_key_digest(m.group(1), m.group(2))
                if d:
                    print(d, path)
