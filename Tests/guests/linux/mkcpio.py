#!/usr/bin/env python3
"""mkcpio.py - write the Linux test guest's initramfs as a newc cpio archive.

Everything is owned by root and device nodes are made in the archive itself,
so no root rights (and no cpio tool) are needed on the build machine.

    mkcpio.py --busybox BUSYBOX --module portal.ko --mapper portal-mapper \
              --tree Tests/guests/linux/initramfs --output initramfs.cpio

The tree's files keep their relative paths (init is made executable).
"""
import argparse
import os
import stat


def header(ino, mode, size, name, rdev=(0, 0), nlink=1):
    fields = [ino, mode, 0, 0, nlink, 0, size, 0, 0, rdev[0], rdev[1], len(name) + 1, 0]
    return b"070701" + b"".join(b"%08x" % f for f in fields)


def pad(length):
    return b"\0" * ((4 - length % 4) % 4)


class Archive:
    def __init__(self):
        self.parts = []
        self.ino = 1

    def add(self, name, mode, data=b"", rdev=(0, 0)):
        raw = name.encode()
        head = header(self.ino, mode, len(data), raw, rdev, 2 if stat.S_ISDIR(mode) else 1)
        self.ino += 1
        self.parts.append(head + raw + b"\0" + pad(len(head) + len(raw) + 1) + data + pad(len(data)))

    def bytes(self):
        trailer = Archive()
        trailer.ino = 0
        trailer.add("TRAILER!!!", 0)
        return b"".join(self.parts + trailer.parts)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--busybox", required=True)
    parser.add_argument("--module", required=True)
    parser.add_argument("--mapper", required=True)
    parser.add_argument("--tree", required=True)
    parser.add_argument("--output", required=True)
    options = parser.parse_args()

    archive = Archive()
    for directory in ["bin", "sbin", "usr", "usr/bin", "usr/sbin", "proc", "sys", "dev", "tmp", "etc", "root", "lib"]:
        archive.add(directory, stat.S_IFDIR | 0o755)
    archive.add("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1))
    archive.add("dev/null", stat.S_IFCHR | 0o666, rdev=(1, 3))
    with open(options.busybox, "rb") as f:
        archive.add("bin/busybox", stat.S_IFREG | 0o755, f.read())
    archive.add("bin/sh", stat.S_IFLNK | 0o777, b"busybox")
    with open(options.module, "rb") as f:
        archive.add("lib/portal.ko", stat.S_IFREG | 0o644, f.read())
    with open(options.mapper, "rb") as f:
        archive.add("bin/portal-mapper", stat.S_IFREG | 0o755, f.read())
    for top, directories, files in sorted(os.walk(options.tree)):
        directories.sort()
        relative = os.path.relpath(top, options.tree)
        for name in sorted(files):
            path = os.path.join(top, name)
            target = os.path.normpath(os.path.join(relative, name))
            mode = 0o755 if target == "init" else 0o644
            with open(path, "rb") as f:
                archive.add(target, stat.S_IFREG | mode, f.read())
    with open(options.output, "wb") as f:
        f.write(archive.bytes())


if __name__ == "__main__":
    main()
