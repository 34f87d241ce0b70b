#!/usr/bin/env python3
"""Build a tiny docker-archive image (docker save format) from busybox-static (Debian package busybox-static).
usage: mkimage.py OUT.tar REPO:TAG [REPO:TAG...] [--cmd '["/bin/sleep","inf"]'] [--index TEXT]
Load it with: ctr -a $K8S_HOME/containerd/containerd.sock -n k8s.io images import OUT.tar
The image holds /bin/busybox with every applet linked (sh, httpd, wget, nc, ...) and /var/www/index.html."""

import hashlib
import io
import json
import os
import struct
import sys
import tarfile

args = sys.argv[1:]
cmd = None
if "--cmd" in args:
    i = args.index("--cmd")
    cmd = json.loads(args[i + 1])
    del args[i : i + 2]
index = "hello from busybox\n"
if "--index" in args:
    i = args.index("--index")
    index = args[i + 1] + "\n"
    del args[i : i + 2]
if len(args) < 2:
    sys.exit(__doc__)
out, tags = args[0], args[1:]
bb = os.environ.get("BUSYBOX", "/bin/busybox")
with open(bb, "rb") as f:
    hdr = f.read(64)
    if hdr[:4] != b"\x7fELF" or hdr[4] != 2:
        sys.exit(bb + ": not a 64-bit ELF binary")
    (phoff,) = struct.unpack_from("<Q", hdr, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", hdr, 0x36)
    f.seek(phoff)
    ph = f.read(phentsize * phnum)
    if any(struct.unpack_from("<I", ph, k * phentsize)[0] == 3 for k in range(phnum)):  # PT_INTERP
        sys.exit(bb + " is dynamically linked: install the Debian package busybox-static")
applets = [l.strip() for l in os.popen(bb + " --list").read().split() if l.strip()]
lbuf = io.BytesIO()
with tarfile.open(fileobj=lbuf, mode="w", format=tarfile.GNU_FORMAT) as t:

    def d(name, mode=0o755):
        ti = tarfile.TarInfo(name)
        ti.type = tarfile.DIRTYPE
        ti.mode = mode
        ti.mtime = 0
        t.addfile(ti)

    for n in ["bin", "etc", "tmp", "var", "var/www", "proc", "sys", "dev", "root", "home"]:
        d(n, 0o1777 if n == "tmp" else 0o755)
    data = open(bb, "rb").read()
    ti = tarfile.TarInfo("bin/busybox")
    ti.size = len(data)
    ti.mode = 0o755
    ti.mtime = 0
    t.addfile(ti, io.BytesIO(data))
    for a in applets:
        if a == "busybox":
            continue
        ti = tarfile.TarInfo("bin/" + a)
        ti.type = tarfile.SYMTYPE
        ti.linkname = "busybox"
        ti.mtime = 0
        t.addfile(ti)
    for name, content in [
        ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"),
        ("etc/group", "root:x:0:\nnobody:x:65534:\n"),
        ("var/www/index.html", index),
    ]:
        b = content.encode()
        ti = tarfile.TarInfo(name)
        ti.size = len(b)
        ti.mode = 0o644
        ti.mtime = 0
        t.addfile(ti, io.BytesIO(b))
layer = lbuf.getvalue()
ldig = hashlib.sha256(layer).hexdigest()
cfg = {
    "architecture": "amd64",
    "os": "linux",
    "created": "2024-01-01T00:00:00Z",
    "config": {
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "Cmd": cmd or ["sh"],
        "WorkingDir": "/",
    },
    "rootfs": {"type": "layers", "diff_ids": ["sha256:" + ldig]},
    "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "mkimage.py"}],
}
cb = json.dumps(cfg).encode()
cdig = hashlib.sha256(cb).hexdigest()
man = [{"Config": cdig + ".json", "RepoTags": tags, "Layers": [ldig + "/layer.tar"]}]
with tarfile.open(out, "w") as t:
    for name, b in [(cdig + ".json", cb), (ldig + "/layer.tar", layer), ("manifest.json", json.dumps(man).encode())]:
        ti = tarfile.TarInfo(name)
        ti.size = len(b)
        ti.mode = 0o644
        t.addfile(ti, io.BytesIO(b))
print(out, tags, "layer", len(layer))
